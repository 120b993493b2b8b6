"""Supervised fine-tuning batches: the examples, their packing without padding, and their losses.

**What is trained is exactly what is scored.** A training example is the prompt the scoring engine
builds for the text (``slmbench.lm.prompts.build_messages`` rendered in the run's prompt format,
``slmbench.lm.prompt_format.PromptFormat``: the chat template with the generation prompt, or plain
text) followed by the label's answer tokens (verbalizer then end of answer). The loss is the cross-entropy of
the answer tokens only: prompt tokens are labelled -100.

**Batches have no padding and compute the shared prompt once**, like the scoring engine. The
examples of a batch start with the same tokens (system prompt, instruction, allowed answers), often
most of each example. So a batch is laid out in rows (``SharedPrefixCollator``): the shared prefix
once, then as many examples as fit in ``ROW_TOKENS``. A 4D attention mask lets each example see the
prefix and itself only, position ids restart after the prefix, and the vocabulary projection runs
only where an answer token is predicted (``logits_to_keep``). Gradients are those of separate
sequences: the prefix's activations just receive the sum of the examples' gradients.

**On CUDA a batch's rows run in one forward** (``padded_causal_lm_loss``): right-padded to the longest,
the padding masked, each row's own positions and query positions; the same loss and gradients as one
forward per row (``row_by_row_causal_lm_loss``), which the CPU keeps (``causal_lm_loss`` chooses by the
batch's device). Side by side on 2 CPU cores (SmolLM2-135M, batches of 16 in 2-3 rows), the padded
forward took 1.9x the time of the per-row one for LoRA under bf16 autocast, the common CPU case, and
0.73x for a full fp32 fine-tune.

A prompt-tuned model's virtual tokens go before the prefix in training (``row_logits``) and, through
``SoftPromptLM``, at prediction time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slmbench.lm.scoring import attention_masks, common_prefix_length, new_cache, sliding_window

if TYPE_CHECKING:
    import torch

    from slmbench.tasks.examples import Examples
    from slmbench.tasks.spec import TaskSpec

ROW_TOKENS = 512
"""Tokens per packed row: enough for the shared prefix and several short examples, small enough that
the (row x row) attention stays cheap next to the linear layers. A longer example gets a row of its own."""


# --- training examples -------------------------------------------------------------------------


def sft_dataset(task: TaskSpec, tokenizer: Any, examples: Examples, max_input_tokens: int, prompt_format: str = "auto") -> Any:
    """A ``datasets.Dataset`` of ``input_ids`` (prompt + answer tokens, in ``prompt_format``) and ``labels`` (-100 on the prompt)."""
    from datasets import Dataset

    from slmbench.lm.prompt_format import PromptFormat
    from slmbench.lm.prompts import build_messages

    rendering = PromptFormat.of(tokenizer, prompt_format)
    conversations = [build_messages(task, text, tokenizer=tokenizer, max_input_tokens=max_input_tokens) for text in examples.texts]
    prompts = rendering.prompts(conversations)
    answers = [rendering.answer(label.verbalizer) for label in task.labels]
    return Dataset.from_dict(
        {
            "input_ids": [prompt + answers[label] for prompt, label in zip(prompts, examples.labels)],
            "labels": [[-100] * len(prompt) + answers[label] for prompt, label in zip(prompts, examples.labels)],
        }
    )


@dataclass
class _Row:
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    """-1 for the shared prefix, k for the k-th example of the row."""
    queries: list[int] = field(default_factory=list)
    """Row index whose logits predict each target."""
    targets: list[int] = field(default_factory=list)
    examples: int = 0

    def add(self, tokens: Sequence[int], labels: Sequence[int], segment: int, start: int) -> None:
        offset = len(self.tokens)
        self.tokens.extend(tokens)
        self.positions.extend(range(start, start + len(tokens)))
        self.segments.extend([segment] * len(tokens))
        for j, label in enumerate(labels):
            if label != -100:
                if j == 0 and segment >= 0:
                    raise ValueError("an answer token cannot be an example's first token after the shared prefix")
                self.queries.append(offset + j - 1)
                self.targets.append(label)
        if segment >= 0:
            self.examples += 1


@dataclass
class SharedPrefixCollator:
    """Packs causal-LM examples (``input_ids``, ``labels``) into rows that share their common prefix.

    Each row: the batch's common prefix (cut before the first answer-predicting token), then whole
    examples' remaining tokens while the row stays within ``row_tokens``. Returns ``{"rows": [...],
    "example_tokens", "computed_tokens", "examples"}``; each row holds 1-D tensors ``input_ids``,
    ``position_ids``, ``segments``, ``queries`` and ``targets``.
    """

    row_tokens: int = ROW_TOKENS

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = [list(f["input_ids"]) for f in features]
        labels = [list(f["labels"]) for f in features]
        answer_starts = [next((i for i, label in enumerate(ls) if label != -100), len(ls)) for ls in labels]
        prefix = max(0, min(common_prefix_length(ids), min(answer_starts) - 1))
        rows: list[_Row] = []
        for tokens, targets in zip(ids, labels):
            suffix = tokens[prefix:]
            if not rows or (rows[-1].examples and len(rows[-1].tokens) + len(suffix) > self.row_tokens):
                rows.append(_Row())
                rows[-1].add(tokens[:prefix], labels[0][:prefix], -1, 0)
            rows[-1].add(suffix, targets[prefix:], rows[-1].examples, prefix)
        fields = ("tokens", "positions", "segments", "queries", "targets")
        names = ("input_ids", "position_ids", "segments", "queries", "targets")
        return {
            "rows": [{name: torch.tensor(getattr(row, f)) for name, f in zip(names, fields)} for row in rows],
            "example_tokens": torch.tensor(sum(map(len, ids))),
            "computed_tokens": torch.tensor(sum(len(row.tokens) for row in rows)),
            "examples": torch.tensor(len(ids)),
        }


# --- forward passes ----------------------------------------------------------------------------


def soft_prompt(model: Any) -> torch.Tensor | None:
    """The (1, virtual tokens, hidden) prompt of a peft prompt-learning model, else None."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not config.is_prompt_learning:
        return None
    return model.get_prompt(batch_size=1)


PADDING_SEGMENT = -2
"""Segment of the padding after a shorter row of a padded batch: no token of the row sees it."""


def _attention_mask(segments: torch.Tensor, dtype: torch.dtype, positions: torch.Tensor, window: int | None) -> Any:
    """(rows, 1, n, n) additive mask of (rows, n) ``segments``: causal, and an example sees only the
    shared prefix (-1) and itself (padding likewise sees the prefix and padding: no row is all masked).

    With a sliding ``window`` (``slmbench.lm.scoring.sliding_window``), the per-layer-type mapping such
    models take: the sliding layers' mask also hides keys ``window`` or more ``positions`` back."""
    import torch

    n = segments.shape[-1]
    causal = torch.ones(n, n, dtype=torch.bool, device=segments.device).tril()
    visible = causal & ((segments[:, None, :] == -1) | (segments[:, None, :] == segments[:, :, None]))
    return attention_masks(visible, dtype, positions, positions, window)


def _with_soft_prompt(
    model: Any, input_ids: torch.Tensor, positions: torch.Tensor, segments: torch.Tensor
) -> tuple[Any, dict[str, torch.Tensor], torch.Tensor, torch.Tensor, int]:
    """(model to call, its inputs, positions, segments, virtual tokens) for (rows, n) token ids.

    A peft prompt-tuning model's virtual tokens go first, as part of the shared prefix, at positions
    0..V-1: the layout ``SoftPromptLM`` reproduces at prediction time. Other models: as given, V = 0.
    """
    import torch

    prompt = soft_prompt(model)
    if prompt is None:
        return model, {"input_ids": input_ids}, positions, segments, 0
    lm = model.base_model
    embeddings = lm.get_input_embeddings()(input_ids)
    rows, n_virtual = input_ids.shape[0], prompt.shape[1]
    inputs = {"inputs_embeds": torch.cat([prompt.to(embeddings.dtype).expand(rows, -1, -1), embeddings], dim=1)}
    positions = torch.cat([torch.arange(n_virtual, device=positions.device).expand(rows, -1), positions + n_virtual], dim=1)
    segments = torch.cat([torch.full((rows, n_virtual), -1, dtype=segments.dtype, device=segments.device), segments], dim=1)
    return lm, inputs, positions, segments, n_virtual


def row_logits(model: Any, row: dict[str, torch.Tensor]) -> torch.Tensor:
    """(targets, vocabulary) logits of one packed row, computed only at the query positions (after a
    prompt-tuned model's virtual tokens: ``_with_soft_prompt``)."""
    lm, inputs, positions, segments, n_virtual = _with_soft_prompt(
        model, row["input_ids"][None], row["position_ids"][None], row["segments"][None]
    )
    # One example after the prefix needs nothing but the causal mask the model builds itself.
    mask = _attention_mask(segments, lm.dtype, positions, sliding_window(lm.config)) if int(segments.max()) > 0 else None
    output = lm(**inputs, position_ids=positions, attention_mask=mask, logits_to_keep=row["queries"] + n_virtual, use_cache=False)
    return output.logits[0]


def _padded(rows: list[dict[str, torch.Tensor]], name: str, value: int) -> torch.Tensor:
    """(rows, longest) tensor of the rows' ``name``, right-padded with ``value``."""
    from torch.nn.utils.rnn import pad_sequence

    return pad_sequence([row[name] for row in rows], batch_first=True, padding_value=value)


def padded_row_logits(model: Any, rows: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """``row_logits`` of every row, the rows right-padded into one forward pass.

    Padding is masked (``PADDING_SEGMENT``), positions are the rows' own, and the vocabulary projection
    runs at the query positions of any row; each row then takes its own.
    """
    import torch

    lm, inputs, positions, segments, n_virtual = _with_soft_prompt(
        model, _padded(rows, "input_ids", 0), _padded(rows, "position_ids", 0), _padded(rows, "segments", PADDING_SEGMENT)
    )
    queries = [row["queries"] + n_virtual for row in rows]
    kept = torch.unique(torch.cat(queries))  # sorted
    mask = _attention_mask(segments, lm.dtype, positions, sliding_window(lm.config))
    logits = lm(**inputs, position_ids=positions, attention_mask=mask, logits_to_keep=kept, use_cache=False).logits
    return [logits[i, torch.searchsorted(kept, row_queries)] for i, row_queries in enumerate(queries)]


def validation_by_scoring(model: Any, dataset: Any, *, batch_size: int, bfloat16: bool | None = None) -> tuple[float, int]:
    """(summed cross-entropy of the answer tokens, answer tokens) of ``dataset``, by the scoring engine.

    The quantity ``causal_lm_loss`` sums over the dataset's batches, computed the way predictions
    are: every distinct answer is a choice, the prompts' shared prefix runs once and each prompt once
    (not once per packed row), and the vocabulary projection runs in fp32. ``model`` in eval mode.
    """
    from slmbench.lm.scoring import score_token_choices

    prompts, answers = [], []
    for ids, labels in zip(dataset["input_ids"], dataset["labels"]):
        start = next(i for i, label in enumerate(labels) if label != -100)
        prompts.append(ids[:start])
        answers.append(tuple(ids[start:]))
    choices = sorted(set(answers))
    lm = SoftPromptLM(model) if soft_prompt(model) is not None else model
    scores = score_token_choices(lm, prompts, choices, batch_size=batch_size, bfloat16=bfloat16)
    gold = [choices.index(answer) for answer in answers]
    total = -float(sum(scores.log_likelihoods[i, choice] for i, choice in enumerate(gold)))
    return total, sum(map(len, answers))


def row_by_row_causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy of the answer tokens, number of answer tokens) of a packed batch, one forward per row."""
    import torch
    import torch.nn.functional as F

    total = torch.zeros(())  # a 0-dim tensor: added to the rows' losses on any device
    count = 0
    for row in batch["rows"]:
        logits = row_logits(model, row)
        total = total + F.cross_entropy(logits.float(), row["targets"], reduction="sum")
        count += len(row["targets"])
    return total, count


def padded_causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """``row_by_row_causal_lm_loss`` with the batch's rows right-padded into one forward (``padded_row_logits``)."""
    import torch
    import torch.nn.functional as F

    logits = torch.cat(padded_row_logits(model, batch["rows"]))
    targets = torch.cat([row["targets"] for row in batch["rows"]])
    return F.cross_entropy(logits.float(), targets, reduction="sum"), len(targets)


def _runs_on_cuda(batch: dict[str, Any]) -> bool:
    return batch["rows"][0]["input_ids"].device.type == "cuda"


def causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy of the answer tokens, number of answer tokens) of a packed batch.

    On CUDA the rows run in one padded forward (one forward per row leaves the GPU waiting on
    launches); on the CPU one forward per row, measured faster there for LoRA (module docstring).
    """
    loss = padded_causal_lm_loss if _runs_on_cuda(batch) else row_by_row_causal_lm_loss
    return loss(model, batch)


@dataclass
class PaddingCollator:
    """Pads tokenized texts (``input_ids``, ``label``) to the longest of the batch, for encoder models.

    Training batches come from a length-grouped sampler, so the padding stays small.
    """

    tokenizer: Any

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        encoded = [{"input_ids": f["input_ids"]} for f in features]
        inputs = self.tokenizer.pad(encoded, padding=True, return_tensors="pt")
        return {
            "inputs": dict(inputs),
            "targets": torch.tensor([f["label"] for f in features]),
            "example_tokens": torch.tensor(sum(len(f["input_ids"]) for f in features)),
            "computed_tokens": torch.tensor(inputs["input_ids"].numel()),
            "examples": torch.tensor(len(features)),
        }


def sequence_classification_loss(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy, examples) of a padded batch for a model with a classification head."""
    import torch.nn.functional as F

    logits = model(**batch["inputs"]).logits
    return F.cross_entropy(logits.float(), batch["targets"], reduction="sum"), len(batch["targets"])


def _with_virtual_columns(mask: torch.Tensor, n_virtual: int, positions: torch.Tensor | None, window: int | None) -> torch.Tensor:
    """``mask`` widened on the left by ``n_virtual`` columns that show the virtual tokens (positions
    0..V-1) to every query, or, with a ``window``, to queries at ``positions`` less than it away."""
    import torch

    shape = (*mask.shape[:-1], n_virtual)
    if mask.dim() != 4:  # 2D padding mask: 1 shows
        return torch.cat([torch.ones(shape, dtype=mask.dtype, device=mask.device), mask], dim=-1)
    shown = torch.ones(shape, dtype=torch.bool, device=mask.device)
    if window is not None and positions is not None:
        keys = torch.arange(n_virtual, device=mask.device)
        shown = (positions[:, None, :, None] - keys < window).expand(shape)
    columns = torch.zeros(shape, dtype=mask.dtype, device=mask.device).masked_fill(~shown, torch.finfo(mask.dtype).min)
    return torch.cat([columns, mask], dim=-1)


class SoftPromptLM:
    """A prompt-tuned model as the scoring engine sees a plain causal LM.

    Every call that starts a key/value cache (none given, or an empty one) first puts the virtual
    tokens in it, at positions 0..V-1; the call's own positions are shifted by V and its attention
    mask widened to show them. That is the layout ``row_logits`` trains: virtual tokens, then the
    prompt from position V.
    """

    def __init__(self, peft_model: Any) -> None:
        import torch

        self.lm = peft_model.base_model
        with torch.no_grad():
            self.prompt = peft_model.get_prompt(batch_size=1).detach()

    @property
    def dtype(self):
        return self.lm.dtype

    @property
    def device(self):
        return self.lm.device

    @property
    def config(self):
        return self.lm.config

    @property
    def training(self) -> bool:
        return self.lm.training

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    def __call__(self, input_ids, *, cache=None, position_ids=None, attention_mask=None, **kwargs):

        n_virtual = self.prompt.shape[1]
        if cache is None or cache.get_seq_length() == 0:
            cache = cache if cache is not None else new_cache(self.config)
            prompt = self.prompt.to(self.lm.dtype).expand(input_ids.shape[0], -1, -1)
            self.lm(inputs_embeds=prompt, cache=cache, use_cache=True, logits_to_keep=1)
        # The cache now starts with the virtual tokens, which the caller's positions and mask don't count.
        if position_ids is not None:
            position_ids = position_ids + n_virtual
        if isinstance(attention_mask, dict):  # per layer type: a sliding layer sees virtual tokens within its window
            window = sliding_window(self.config)
            attention_mask = {
                kind: _with_virtual_columns(mask, n_virtual, position_ids, window if kind == "sliding_attention" else None)
                for kind, mask in attention_mask.items()
            }
        elif attention_mask is not None:
            attention_mask = _with_virtual_columns(attention_mask, n_virtual, position_ids, None)
        return self.lm(input_ids, cache=cache, position_ids=position_ids, attention_mask=attention_mask, **kwargs)
