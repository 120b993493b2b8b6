"""The deployment check: a trained model's quantized copies, each rebuilt, saved, measured and freed.

A copy is the trained model loaded from a transformers checkpoint through transformers'
``quantization_config``, so the quantization is the library's own, the same call on CPU and GPU:

- ``int8``: on CPU, torchao's dynamic int8 (int8 weights, activations quantized per token at run
  time: the successor of ``torch.ao.quantization.quantize_dynamic``, which torch 2.13 marks deprecated
  and whose layers fail under bfloat16 autocast), runs under the scoring engine's autocast; on CUDA,
  bitsandbytes' LLM.int8. (bitsandbytes' int8 runs on CPU too, but 2-3 times slower than fp32 here.)
- ``nf4``: bitsandbytes' 4-bit NormalFloat with double quantization, QLoRA's format (CPU and CUDA).
- the run's dtype (``float32``...): the unquantized model, rebuilt the same way, as the reference
  the others are compared with (its accuracy is the trial's own, its size and latency measured alike).

Embeddings, norms and the output head stay in the run's dtype (transformers' defaults). Parts a
strategy keeps apart from the base weights (an unmerged adapter, a soft prompt, bottleneck adapters)
are put back in full precision on the quantized base. The size on disk is that of the copy saved
with ``save_pretrained`` (safetensors) plus those parts' files. Only one copy lives at a time.

No GGUF export: no maintained PyPI package writes GGUF from a transformers model (``gguf`` writes
the file format but has no model converter; llama.cpp's ``convert_hf_to_gguf.py`` is not packaged by
its authors).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmbench.tasks.examples import Predictions

QUANTIZATIONS = ("int8", "nf4")
DTYPES = ("float32", "bfloat16", "float16")


class UnsupportedQuantization(RuntimeError):
    """The quantization has no library support on this device here."""


def quantization_config(quantization: str, device: str, keep: list[str] | None = None) -> Any:
    """transformers' ``quantization_config`` for ``quantization`` on ``device``; None for an unquantized dtype.

    ``keep``: modules left unquantized, in place of transformers' defaults (a causal LM's output head).
    """
    import torch

    from slmbench.lm.finetuning.setup import autocast_dtype

    kind = torch.device(device).type
    if quantization in DTYPES:
        return None
    if quantization == "int8" and kind == "cpu":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig
        from transformers import TorchAoConfig

        return TorchAoConfig(Int8DynamicActivationInt8WeightConfig(), modules_to_not_convert=keep)
    if quantization == "int8" and kind == "cuda":
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)
    if quantization == "nf4" and kind in ("cpu", "cuda"):
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=autocast_dtype(device) or torch.float32,
            llm_int8_skip_modules=keep,  # the 4-bit layers' skip list too, despite its name
        )
    raise UnsupportedQuantization(f"{quantization} is not supported on {device} here")


@dataclass
class Rebuild:
    """How a strategy's trained model is put together again on a (quantized) checkpoint."""

    checkpoint: str
    """Folder of the transformers checkpoint whose weights are quantized."""
    model_class: Any
    """``AutoModelForCausalLM``, ``AutoModelForSequenceClassification``..."""
    predict: Callable[[Any, Sequence[str]], Predictions]
    """The strategy's own prediction path, given the model."""
    attach: Callable[[Any], Any] = lambda model: model
    """Puts back what is kept in full precision (an unmerged adapter, a soft prompt)."""
    attached_files: list[Path] = field(default_factory=list)
    """The files of what ``attach`` puts back, counted in the size on disk."""
    keep: list[str] | None = None
    """Modules left unquantized (a classification head); None: transformers' defaults (a causal LM's head)."""


@dataclass
class Deployed:
    """What a ``QuantizedCopy`` gives inside its ``with``: predictions and the copy's size on disk."""

    predict: Callable[[Sequence[str]], Predictions]
    size_bytes: int


class QuantizedCopy:
    """A context manager: ``rebuild`` (given a scratch folder for a checkpoint it may write) says how
    the model is put together; on entry the copy is loaded quantized and saved to measure its size,
    on exit it is freed and its files deleted."""

    def __init__(self, quantization: str, rebuild: Callable[[Path], Rebuild], device: str, dtype: str) -> None:
        self.quantization = quantization
        self.rebuild = rebuild
        self.device = device
        self.dtype = dtype
        self._model: Any = None
        self._scratch: Path | None = None

    def __enter__(self) -> Deployed:
        from slmbench.common.files import folder_bytes
        from slmbench.lm.models import torch_dtype

        quantization_config(self.quantization, self.device)  # unsupported: fail before any work
        self._scratch = Path(tempfile.mkdtemp(prefix="slmbench-deploy-"))
        try:
            recipe = self.rebuild(self._scratch / "checkpoint")
            model = recipe.model_class.from_pretrained(
                recipe.checkpoint,
                dtype=torch_dtype(self.dtype),
                device_map=self.device,
                quantization_config=quantization_config(self.quantization, self.device, recipe.keep),
            )
            model.save_pretrained(self._scratch / "deployed")
            size = folder_bytes(self._scratch / "deployed") + sum(path.stat().st_size for path in recipe.attached_files)
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._model = recipe.attach(model)
            self._model.eval()
        except BaseException:
            self.__exit__()
            raise
        return Deployed(lambda texts: recipe.predict(self._model, texts), size)

    def __exit__(self, *exc: object) -> None:
        from slmbench.lm.memory import free_accelerator_memory, release_freed_memory

        self._model = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        free_accelerator_memory()
        release_freed_memory()


def quantized_copies(
    rebuild: Callable[[Path], Rebuild], device: str, dtype: str, quantizations: Sequence[str] = QUANTIZATIONS, reference: bool = True
) -> list[QuantizedCopy]:
    """One copy per quantization, after the unquantized reference in ``dtype`` if ``reference``."""
    return [QuantizedCopy(name, rebuild, device, dtype) for name in ([dtype] if reference else []) + list(quantizations)]
