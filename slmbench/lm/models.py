"""Model resolution and loading: embedded offline defaults, hub ids, local folders; device and dtype.

The embedded models (``slmbench.lm.embedded``) come from PyPI packages so slmbench works with no
network. Any other name is handed to ``from_pretrained`` as a hub id or a local directory.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmbench.lm.embedded import EMBEDDED, EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL, ModelError, embedded_folder


def model_license(name: str) -> str | None:
    """A model's licence as its hub card states it (``apache-2.0``, ``gemma``...): the embedded models'
    are known; a Gemma model (by its name or its config's model type) is under the Gemma terms whatever
    its folder says; else a local folder's ``README.md`` front matter. None when unknown (a hub id)."""
    import json

    if name in EMBEDDED:
        return EMBEDDED[name].license
    if "gemma" in Path(name).name.lower():  # a hub id or folder named for it: the terms apply whatever else is said
        return "gemma"
    folder = Path(name)
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        model_type = ""
    if str(model_type).startswith("gemma"):
        return "gemma"
    try:
        from huggingface_hub import ModelCard

        card = ModelCard.load(folder / "README.md") if (folder / "README.md").is_file() else None
    except Exception:  # noqa: BLE001 - a model folder's README that is not a model card: its licence is unknown
        return None
    license = card.data.to_dict().get("license") if card is not None else None
    return str(license) if license else None


def resolve_causal_lm(name: str) -> str:
    """A path or hub id that ``from_pretrained`` accepts: ``name`` if it is a folder, else an embedded
    causal LM's folder, else ``name`` (a hub id)."""
    return name if os.path.isdir(os.path.expanduser(name)) else str(embedded_folder(name, "causal LM") or name)


def resolve_embedding_model(name: str) -> str:
    """A path or hub id for sentence-transformers, as ``resolve_causal_lm`` finds it."""
    return name if os.path.isdir(os.path.expanduser(name)) else str(embedded_folder(name, "embedding") or name)


def not_a_device(device: str) -> str | None:
    """Why ``--device`` is not a device torch knows (one line), or None."""
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"--device {device[:60]!r}: not a device; use auto, cpu, cuda, cuda:N or mps"
    return None


def choose_device(requested: str = "auto") -> str:
    """cuda, then mps, then cpu, unless the user named one."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(requested: str, device: str) -> str:
    """bfloat16 on GPUs that multiply it natively (compute capability 8.0 and above), float16 on older
    GPUs, float32 elsewhere, unless named. Called where the trial runs: the GPU that decides is its own.

    torch's ``is_bf16_supported()`` alone says yes on a T4 too, where bf16 is emulated and slow.
    """
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float16"
    return "float32"


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


_BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}
_LOAD_OVERHEAD = 1.2
"""Headroom on top of the weights: activations, tokenizer, allocator slack."""


def available_memory_bytes(device: str) -> int | None:
    """Free memory where the model will live: the GPU's, or the machine's (Linux); None if unknown."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return free
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def stored_param_count(folder: Path) -> int | None:
    """Parameters of the model in ``folder``, read from its safetensors headers; None if there are none."""
    files = list(folder.glob("*.safetensors")) + list(folder.glob("*/*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    parameters = 0
    for file in files:
        with safe_open(str(file), framework="np") as weights:
            for key in weights.keys():  # noqa: SIM118 - safetensors' safe_open has keys(), no iteration
                parameters += math.prod(weights.get_slice(key).get_shape())
    return parameters


def estimated_load_bytes(folder: Path, dtype: str) -> int | None:
    """Memory to load the model in ``folder`` at ``dtype``, from its safetensors headers; None if unknown."""
    parameters = stored_param_count(folder)
    return None if parameters is None else int(parameters * _BYTES_PER_PARAM[dtype] * _LOAD_OVERHEAD)


def check_fits_in_memory(path: str, device: str, dtype: str) -> None:
    """Refuse, before loading, a local model that cannot fit in the free memory of ``device``."""
    folder = Path(path)
    needed = estimated_load_bytes(folder, dtype) if folder.is_dir() else None
    available = available_memory_bytes(device) if needed else None
    if needed and available and needed > available:
        raise ModelError(
            f"{path} needs about {needed / 2**20:,.0f} MiB to load in {dtype} on {device}, but only "
            f"{available / 2**20:,.0f} MiB are free: use a smaller model, a 16-bit --dtype, or qlora"
        )


def native_model_type(path: str) -> str | None:
    """The ``model_type`` of the model at ``path`` when transformers implements it itself, else None.

    A hub repository may ship its own modelling code (``auto_map`` in its config) for an architecture
    transformers has since adopted; Phi-3.5's old file knows nothing of the cache argument the
    scoring engine passes. Reading the config needs no code from the repository.
    """
    from transformers import PretrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    try:
        config, _ = PretrainedConfig.get_config_dict(path)
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type")
    return model_type if model_type in CONFIG_MAPPING_NAMES else None


def remote_code(path: str, trust_remote_code: bool) -> bool:
    """Whether to run the repository's own code for the model at ``path``: only when the user allows it
    and transformers has no implementation of its architecture (``native_model_type``)."""
    return trust_remote_code and native_model_type(path) is None


def param_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def param_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


class SharedModel(str, enum.Enum):
    """A model a run loads once and shares between its strategies: a ``SharedModels`` method of that name."""

    CAUSAL_LM = "causal_lm"
    """The causal LM (``--model``): ``causal_lm()`` gives (model, tokenizer)."""
    EMBEDDER = "embedder"
    """The sentence-embedding model (``--embedding-model``): ``embedder()``, or ``encode(texts)``."""


LoadedModels = dict[tuple[str, str, str, str, bool], Any]
"""Models in memory, by (kind, name, device, dtype, trust_remote_code): one copy of each per process."""


@dataclass
class SharedModels:
    """The models of one trial's models configuration, loaded on first use and then shared by every
    strategy; ``loaded`` (given by the process's ``ModelCache``) holds one copy of each model per name,
    device and dtype, whatever configuration asked for it.

    ``used`` records which models were asked for since the last ``reset_usage()``, so each trial
    can be charged the memory of the shared weights it relied on; ``called`` says which of the
    ``SharedModel`` kinds that was.
    """

    causal_lm_name: str = EMBEDDED_CAUSAL_LM
    embedding_model_name: str = EMBEDDED_EMBEDDING_MODEL
    device: str = "cpu"
    dtype: str = "float32"
    """Resolved where the trial runs (``choose_dtype``) when ``auto``."""
    trust_remote_code: bool = False
    prompt_format: str = "auto"
    """How every strategy prompts the causal LM (``slmbench.lm.prompt_format``), as asked for: auto, chat or completion."""
    progress: Any = None
    """A ``ProgressReporter`` for encoding; None: silent."""
    loaded: LoadedModels = field(default_factory=dict, repr=False)
    _vectors: dict[str, Any] = field(default_factory=dict, repr=False)
    used: dict[str, int] = field(default_factory=dict)
    called: set[SharedModel] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.device = choose_device(self.device)
        self.dtype = choose_dtype(self.dtype, self.device)

    @classmethod
    def from_config(cls, config: Any, loaded: LoadedModels | None = None) -> SharedModels:
        """The models a ``slmbench.records.schema.ModelsConfig`` names, sharing ``loaded``'s copies."""
        return cls(
            config.causal_lm,
            config.embedding_model,
            config.device,
            config.dtype,
            config.trust_remote_code,
            config.prompt_format,
            loaded=loaded if loaded is not None else {},
        )

    def key(self, kind: SharedModel) -> tuple[str, str, str, str, bool]:
        """Where ``kind`` is kept in ``loaded``."""
        name = self.causal_lm_name if kind == SharedModel.CAUSAL_LM else self.embedding_model_name
        return (SharedModel(kind).value, name, self.device, self.dtype, self.trust_remote_code)

    def causal_lm(self) -> tuple[Any, Any]:
        """(model, tokenizer) of the causal LM, in eval mode, loaded straight onto the run's device and dtype."""
        key = self.key(SharedModel.CAUSAL_LM)
        if key not in self.loaded:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = resolve_causal_lm(self.causal_lm_name)
            check_fits_in_memory(path, self.device, self.dtype)
            trust = remote_code(path, self.trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=torch_dtype(self.dtype), device_map=self.device, trust_remote_code=trust
            )
            model.eval()
            self.loaded[key] = (model, tokenizer)
        model, tokenizer = self.loaded[key]
        self.used[self.causal_lm_name] = param_bytes(model)
        self.called.add(SharedModel.CAUSAL_LM)
        return model, tokenizer

    def causal_lm_path(self) -> str:
        """Where the causal LM's weights are, for strategies that load their own (trainable) copy."""
        return resolve_causal_lm(self.causal_lm_name)

    def tokenizer(self, put_together: bool = True) -> Any:
        """The causal LM's tokenizer: the shared model's when loaded, else loaded alone (no weights, not
        counted as used). ``put_together`` False: a ``ModelError`` rather than building an embedded model's folder."""
        key = self.key(SharedModel.CAUSAL_LM)
        if key in self.loaded:
            return self.loaded[key][1]
        from transformers import AutoTokenizer

        embedded = EMBEDDED.get(self.causal_lm_name)
        if not put_together and embedded is not None and embedded.cached() is None:
            raise ModelError(f"the embedded model {self.causal_lm_name} is put together when first loaded")

        path = resolve_causal_lm(self.causal_lm_name)
        return AutoTokenizer.from_pretrained(path, trust_remote_code=remote_code(path, self.trust_remote_code))

    def resolved_prompt_format(self) -> str:
        """``chat`` or ``completion``: what ``prompt_format`` comes to for the causal LM's tokenizer."""
        from slmbench.lm.prompt_format import resolve_prompt_format

        return resolve_prompt_format(self.tokenizer(), self.prompt_format, self.causal_lm_name)

    def embedder(self) -> Any:
        """The sentence-transformers embedding model, on the run's device; on a GPU in the run's 16-bit
        dtype, with TF32 matmuls allowed for whatever stays in fp32."""
        key = self.key(SharedModel.EMBEDDER)
        if key not in self.loaded:
            from sentence_transformers import SentenceTransformer

            path = resolve_embedding_model(self.embedding_model_name)
            check_fits_in_memory(path, self.device, self.dtype)
            on_gpu = self.device.startswith("cuda")
            if on_gpu:
                import torch

                torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls
            self.loaded[key] = SentenceTransformer(
                path,
                device=self.device,
                trust_remote_code=remote_code(path, self.trust_remote_code),
                model_kwargs={"dtype": torch_dtype(self.dtype)} if on_gpu else None,
            )
        model = self.loaded[key]
        self.used[self.embedding_model_name] = param_bytes(model)
        self.called.add(SharedModel.EMBEDDER)
        return model

    def embedding_model_path(self) -> str:
        return resolve_embedding_model(self.embedding_model_name)

    def encode(self, texts: Sequence[str], description: str = "Encoding texts") -> Any:
        """Unit vectors of ``texts`` from the embedder; within a trial each distinct text is encoded once
        (an option search refits a strategy several times on the same texts)."""
        import numpy as np

        from slmbench.common.progress import ProgressReporter
        from slmbench.lm.retrieval import encode

        new = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if new:
            progress = self.progress or ProgressReporter(enabled=False)
            self._vectors.update(zip(new, encode(self.embedder(), new, progress, description)))
        return np.stack([self._vectors[text] for text in texts])

    def forget_vectors(self) -> None:
        """Drop the cached vectors (before a timed prediction: it must pay for its own encoding)."""
        self._vectors = {}

    def load(self, kind: SharedModel) -> None:
        """Load ``kind`` now (before a trial's timers start)."""
        getattr(self, SharedModel(kind).value)()

    def param_count(self, kind: SharedModel) -> int:
        """Parameters of the shared ``kind`` (loaded if needed), without counting it as called."""
        used, called = dict(self.used), set(self.called)
        loaded = getattr(self, SharedModel(kind).value)()
        self.used, self.called = used, called
        return param_count(loaded[0] if isinstance(loaded, tuple) else loaded)

    def reset_usage(self) -> None:
        """Start a trial: no model used yet, no vector cached (a trial pays for its own encoding)."""
        self.used = {}
        self.called = set()
        self.forget_vectors()
