"""The memory estimate (``slmbench.lm.memory_estimate``) against the tensor memory measured on this CPU,
for the embedded models: SmolLM2-135M-Instruct scoring a batch, and one LoRA and one full fine-tuning
step (with and without gradient checkpointing), all-MiniLM-L6-v2 encoding a batch and one encoder
fine-tuning step. Training runs as slmbench trains: under bf16 autocast where this CPU multiplies bf16
natively, frozen linear layers then stored in bf16, fused AdamW, logits at the answer tokens only.

**How tensor memory is measured**: ``LiveTensorBytes``, a ``TorchDispatchMode`` that sees every tensor
an operation returns (forward, backward and optimizer alike), counts the bytes of each new storage
once and subtracts them when the storage is freed (a ``weakref.finalize`` on it); the peak of that
sum during the step, plus the storages alive before it (weights, buffers), is the measured peak.
This is what a CUDA allocator would have to hold (``torch.cuda.max_memory_allocated``), without the
allocator's rounding and caching; resident memory (RSS) would add the heap's fragmentation and
torch's own libraries, which a GPU does not charge to its memory.

    .venv/bin/python benchmarks/memory_estimate.py [--batch 4] [--tokens 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from slmbench.lm.finetuning.setup import frozen_linears_in
from slmbench.lm.memory_estimate import (
    ANSWER_TOKENS,
    MemoryRequest,
    inference_footprint,
    model_shape,
)
from slmbench.lm.models import resolve_causal_lm, resolve_embedding_model

MIB = 2**20


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the CPU tensor storages created inside the block and still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._alive: set[int] = set()

    def _freed(self, key: int, size: int) -> None:
        self._alive.discard(key)
        self.live -= size

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self._alive:  # a view, or an in-place result: counted already
                continue
            self._alive.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, size)
        return out


def storage_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Bytes of the distinct storages of the model's parameters and buffers (tied weights once) and the optimizer's states."""
    tensors = [*model.parameters(), *model.buffers()]
    if optimizer is not None:
        tensors += [value for state in optimizer.state.values() for value in state.values() if isinstance(value, torch.Tensor)]
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def measured_peak(step: Callable[[], Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Peak tensor bytes of ``step``, run once before (a training step's first creates the optimizer's
    states): what it allocates at its peak, plus the weights and states alive before it."""
    if optimizer is not None:
        step()
    with LiveTensorBytes() as tracker:
        step()
    return storage_bytes(model, optimizer) + tracker.peak


# --- the cases ---------------------------------------------------------------------------------


def causal_lm(dtype: torch.dtype = torch.float32) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(resolve_causal_lm("smollm2-135m-instruct"), dtype=dtype)


def random_ids(batch: int, tokens: int) -> torch.Tensor:
    return torch.randint(100, 10_000, (batch, tokens), generator=torch.Generator().manual_seed(0))


def training_step(model: torch.nn.Module, ids: torch.Tensor, autocast: bool) -> tuple[Callable[[], None], torch.optim.Optimizer]:
    """One optimizer step as slmbench trains: logits at the answer tokens only (``logits_to_keep``), fused AdamW."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=ids, logits_to_keep=ANSWER_TOKENS, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, -ANSWER_TOKENS:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, optimizer


def request(strategy: str, batch: int, tokens: int, options: Any) -> MemoryRequest:
    return MemoryRequest(strategy=strategy, device="cpu", dtype="float32", batch_size=batch, max_input_tokens=tokens, options=options)


def causal_lm_scoring(batch: int, tokens: int) -> tuple[float, int]:
    """A forward pass with a key/value cache, logits at the last token (the scoring engine's)."""
    shape = model_shape(resolve_causal_lm("smollm2-135m-instruct"))
    estimate = inference_footprint(shape, "float32", batch, tokens, kv_cache=True).total
    model = causal_lm().eval()
    ids = random_ids(batch, tokens)

    def step() -> None:
        with torch.inference_mode():
            output = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        del output

    return estimate, measured_peak(step, model)


def lora_step(batch: int, tokens: int) -> tuple[float, int]:
    from peft import get_peft_model

    from slmbench_plugins.lora import Lora, MergeableLoraOptions, lora_config

    options = MergeableLoraOptions()
    wanted = request("lora", batch, tokens, options)
    estimate = Lora.estimate_memory(wanted).total_mb * MIB
    model = get_peft_model(causal_lm(), lora_config(options))
    model.train()
    step, optimizer = training_step(model, random_ids(batch, tokens), wanted.autocast)
    with frozen_linears_in(model, torch.bfloat16 if wanted.autocast else None):
        return estimate, measured_peak(step, model, optimizer)


def full_step(batch: int, tokens: int, checkpointing: bool) -> tuple[float, int]:
    from slmbench_plugins.full_finetune import FullFinetune, FullFinetuneOptions

    wanted = request("full-finetune", batch, tokens, FullFinetuneOptions(gradient_checkpointing=checkpointing))
    estimate = FullFinetune.estimate_memory(wanted).total_mb * MIB
    model = causal_lm()
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    step, optimizer = training_step(model, random_ids(batch, tokens), wanted.autocast)
    return estimate, measured_peak(step, model, optimizer)


def embedder_encoding(batch: int) -> tuple[float, int]:
    """sentence-transformers encoding ``batch`` texts long enough to be truncated at its max_seq_length."""
    from sentence_transformers import SentenceTransformer

    path = resolve_embedding_model("all-minilm-l6-v2")
    shape = model_shape(path, causal=False)
    tokens = shape.max_positions or 256
    estimate = inference_footprint(shape, "float32", batch, tokens, kv_cache=False).total
    model = SentenceTransformer(path, device="cpu")
    texts = [" ".join(f"word{i * 7 + j}" for j in range(tokens)) for i in range(batch)]
    return estimate, measured_peak(lambda: model.encode(texts, batch_size=batch, show_progress_bar=False), model)


def encoder_step(batch: int, tokens: int) -> tuple[float, int]:
    from transformers import AutoModelForSequenceClassification

    from slmbench_plugins.encoder_finetune import EncoderFinetune, EncoderFinetuneOptions

    wanted = request("encoder-finetune", batch, tokens, EncoderFinetuneOptions())
    estimate = EncoderFinetune.estimate_memory(wanted).total_mb * MIB
    model = AutoModelForSequenceClassification.from_pretrained(resolve_embedding_model("all-minilm-l6-v2"), num_labels=3)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = random_ids(batch, tokens)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=wanted.autocast):
            logits = model(input_ids=ids).logits
        torch.nn.functional.cross_entropy(logits.float(), torch.zeros(batch, dtype=torch.long)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return estimate, measured_peak(step, model, optimizer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="training and scoring batch (texts)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per text")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    batch, tokens = args.batch, args.tokens
    cases = {
        f"SmolLM2-135M scoring, {batch} x {tokens} tokens, fp32": lambda: causal_lm_scoring(batch, tokens),
        f"SmolLM2-135M LoRA step, {batch} x {tokens}": lambda: lora_step(batch, tokens),
        f"SmolLM2-135M full fine-tune step, {batch} x {tokens}": lambda: full_step(batch, tokens, False),
        f"SmolLM2-135M full fine-tune step, checkpointing, {batch} x {tokens}": lambda: full_step(batch, tokens, True),
        "all-MiniLM-L6-v2 encoding, 64 texts": lambda: embedder_encoding(64),
        f"all-MiniLM-L6-v2 encoder fine-tune step, 16 x {tokens}": lambda: encoder_step(16, tokens),
    }
    autocast = request("", batch, tokens, None).autocast
    print(f"training under bf16 autocast: {autocast} (this CPU {'has' if autocast else 'lacks'} native bf16)")
    rows = []
    print(f"| {'case':<62} | estimate MiB | measured MiB | error |")
    print(f"|{'-' * 64}|-------------:|-------------:|------:|")
    for name, case in cases.items():
        estimate, measured = case()
        error = (estimate - measured) / measured
        rows.append({"case": name, "estimate_mib": round(estimate / MIB), "measured_mib": round(measured / MIB), "error": round(error, 3)})
        print(f"| {name:<62} | {estimate / MIB:12.1f} | {measured / MIB:12.1f} | {error:+5.0%} |", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"autocast": autocast, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
