"""Exported forms a plain library loads: writing them (a sentence-transformers folder, an ONNX copy of
a sequence classifier, a quantized checkpoint saved without pickle), predicting with them exactly as
their users would, and the few lines of code a model card shows for each (``usage``).

The kinds are ``slmbench.records.FormKind``'s plain-library ones:

- ``skops-pipeline``: a scikit-learn pipeline on raw texts, in skops' format;
- ``sentence-transformers-skops``: a sentence-transformers model (unit vectors) and a skops head;
- ``transformers-sequence-classification``: a transformers folder with its tokenizer;
- ``onnx-sequence-classification``: the same model exported by ``torch.onnx`` (dynamo), run by onnxruntime.

Every predictor returns the probabilities of the task's labels in task order (a label the head never
saw gets 0), so a form's labels compare one to one with its trial's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.records import ExportForm
from slmbench.tasks.examples import Predictions

if TYPE_CHECKING:
    import numpy as np

ONNX_FILE = "model.onnx"
SENTENCE_TRANSFORMERS_DIR = "sentence-transformers"
HEAD_FILE = "head.skops"
PREDICT_BATCH = 64
"""Texts a form predicts at a time (a transformers model pads a batch to its longest text)."""
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""Files ``save_pretrained`` writes when a quantized model cannot be saved as safetensors."""


class UnsafeSerialization(RuntimeError):
    """A quantized checkpoint that its library saves only with pickle."""


# --- writing -----------------------------------------------------------------------------------


def save_sentence_transformer(embedder: Any, folder: Path) -> None:
    """The sentence-transformers model, whole (modules, tokenizer, safetensors weights)."""
    embedder.save(str(folder), safe_serialization=True)


def export_onnx(model: Any, tokenizer: Any, folder: Path, max_length: int) -> None:
    """``model`` (a transformers sequence classifier) as ``folder/model.onnx`` with its tokenizer,
    batch and sequence length dynamic. optimum's ONNX exporter (``optimum-onnx`` 0.1.0, the latest on
    PyPI) requires transformers < 4.58, so this is torch's own (``torch.onnx.export``, dynamo)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    inputs = tokenizer(
        ["an example", "a second, longer example text"], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in inputs]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    model = model.float().eval().to("cpu")
    torch.onnx.export(
        model,
        (),
        str(folder / ONNX_FILE),
        kwargs={name: inputs[name] for name in names},
        input_names=names,
        output_names=["logits"],
        dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
        dynamo=True,
        verbose=False,
    )
    tokenizer.save_pretrained(str(folder))


def save_quantized(checkpoint: str, model_class: Any, quantization_config: Any, dtype: Any, device: str, target: Path) -> None:
    """The checkpoint loaded on ``device`` through transformers' ``quantization_config`` and saved to
    ``target``; UnsafeSerialization (``target`` removed) if the library cannot save it as safetensors."""
    import shutil

    model = model_class.from_pretrained(checkpoint, dtype=dtype, device_map=device, quantization_config=quantization_config)
    try:
        model.save_pretrained(str(target), safe_serialization=True)
    except (ValueError, NotImplementedError, RuntimeError) as error:  # transformers refuses a quantizer it cannot serialize
        shutil.rmtree(target, ignore_errors=True)
        raise UnsafeSerialization(f"on {device}, transformers cannot save it: {error}") from None
    pickled = sorted(path.name for path in target.rglob("*") if path.suffix in PICKLED_SUFFIXES)
    if pickled or not any(target.glob("*.safetensors")):
        shutil.rmtree(target, ignore_errors=True)
        raise UnsafeSerialization(f"on {device}, saved only with pickle ({', '.join(pickled) or 'no safetensors file'})")


def form_bytes(directory: Path, form: ExportForm) -> int:
    """Size on disk of a form's files (its folder, or its file; the head beside a sentence-transformers model)."""
    from slmbench.common.files import folder_bytes

    path = directory / form.path
    size = folder_bytes(path) if path.is_dir() else path.stat().st_size
    for key in ("head", "adapter"):
        extra = form.settings.get(key)
        if isinstance(extra, str):
            extra_path = directory / extra
            size += folder_bytes(extra_path) if extra_path.is_dir() else extra_path.stat().st_size
    return size


# --- predicting --------------------------------------------------------------------------------


def plain_library_predictor(
    form: ExportForm, directory: Path, n_labels: int, device: str = "cpu"
) -> Callable[[Sequence[str]], Predictions]:
    """A predictor of ``form`` loaded from ``directory`` by its own library, as the card's lines do."""
    loaders = {
        "skops-pipeline": _skops_pipeline,
        "sentence-transformers-skops": _sentence_transformers_skops,
        "transformers-sequence-classification": _transformers_sequence_classification,
        "onnx-sequence-classification": _onnx_sequence_classification,
    }
    if form.kind not in loaders:
        raise ValueError(f"an exported form of kind {form.kind} is not loaded by a plain library")
    probabilities = loaders[form.kind](form, directory, device)

    def predict(texts: Sequence[str]) -> Predictions:
        import numpy as np

        texts = list(texts)
        rows = np.concatenate(
            [probabilities(texts[i : i + PREDICT_BATCH]) for i in range(0, len(texts), PREDICT_BATCH)] or [np.zeros((0, n_labels))]
        )
        if rows.shape[1] != n_labels:
            raise ValueError(f"{form.path}: {rows.shape[1]} probabilities per text, for {n_labels} labels")
        return Predictions(labels=rows.argmax(axis=1).tolist(), probabilities=rows)

    return predict


def _in_task_order(probabilities: np.ndarray, classes: Any, n_labels: int) -> np.ndarray:
    """A scikit-learn head's probabilities (columns: its ``classes_``) as one column per task label."""
    import numpy as np

    rows = np.zeros((len(probabilities), n_labels))
    rows[:, classes] = probabilities
    return rows


def _skops_pipeline(form: ExportForm, directory: Path, device: str) -> Callable[[list[str]], np.ndarray]:
    import skops.io

    pipeline = skops.io.load(directory / form.path)  # scikit-learn's and numpy's types only
    n_labels = int(form.settings["n_labels"])  # type: ignore[arg-type]  # written by the exporter
    return lambda texts: _in_task_order(pipeline.predict_proba(texts), pipeline.classes_, n_labels)


def _sentence_transformers_skops(form: ExportForm, directory: Path, device: str) -> Callable[[list[str]], np.ndarray]:
    import skops.io
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(directory / form.path), device=device)
    head = skops.io.load(directory / str(form.settings["head"]))
    n_labels = int(form.settings["n_labels"])  # type: ignore[arg-type]  # written by the exporter
    return lambda texts: _in_task_order(head.predict_proba(encoder.encode(texts, normalize_embeddings=True)), head.classes_, n_labels)


def _transformers_sequence_classification(form: ExportForm, directory: Path, device: str) -> Callable[[list[str]], np.ndarray]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = str(directory / form.path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, device_map=device).eval()
    autocast = form.settings.get("autocast")

    def probabilities(texts: list[str]) -> np.ndarray:
        inputs = tokenizer(texts, truncation=True, max_length=form.settings["max_length"], padding=True, return_tensors="pt").to(device)
        cast = torch.autocast(torch.device(device).type, dtype=getattr(torch, str(autocast))) if autocast else nullcontext()
        with torch.inference_mode(), cast:
            return model(**inputs).logits.float().softmax(-1).cpu().numpy()

    return probabilities


def _onnx_sequence_classification(form: ExportForm, directory: Path, device: str) -> Callable[[list[str]], np.ndarray]:
    import numpy as np
    import onnxruntime
    from transformers import AutoTokenizer

    folder = directory / form.path
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    names = {node.name for node in session.get_inputs()}

    def probabilities(texts: list[str]) -> np.ndarray:
        inputs = tokenizer(texts, truncation=True, max_length=form.settings["max_length"], padding=True, return_tensors="np")
        logits = session.run(None, {name: value for name, value in inputs.items() if name in names})[0]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    return probabilities


# --- the model card's lines --------------------------------------------------------------------


def usage(form: ExportForm, labels: list[str]) -> str | None:
    """Python lines that load ``form`` without slmbench and print a label per text (run from the
    export folder); None for a form only slmbench loads."""
    names = json.dumps(labels, ensure_ascii=False)
    head = f'texts = ["The company reported record profits this quarter."]\nlabels = {names}\n'
    if form.kind == "skops-pipeline":
        return (
            head + "import skops.io\n\n"
            f'pipeline = skops.io.load("{form.path}")\n'
            "probabilities = pipeline.predict_proba(texts)  # one column per pipeline.classes_ (label indices)\n"
            "predicted = [labels[pipeline.classes_[row.argmax()]] for row in probabilities]\n"
            "print(predicted)\n"
        )
    if form.kind == "sentence-transformers-skops":
        return (
            head + "import skops.io\nfrom sentence_transformers import SentenceTransformer\n\n"
            f'encoder = SentenceTransformer("{form.path}")\n'
            f'head = skops.io.load("{form.settings["head"]}")\n'
            "probabilities = head.predict_proba(encoder.encode(texts, normalize_embeddings=True))\n"
            "predicted = [labels[head.classes_[row.argmax()]] for row in probabilities]\n"
            "print(predicted)\n"
        )
    max_length = form.settings.get("max_length")
    if form.kind == "transformers-sequence-classification":
        autocast = form.settings.get("autocast")
        cast = f'torch.autocast("cpu", dtype=torch.{autocast})' if autocast else "torch.autocast('cpu', enabled=False)"
        return (
            head + "import torch\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{form.path}")\n'
            f'model = AutoModelForSequenceClassification.from_pretrained("{form.path}").eval()\n'
            f'inputs = tokenizer(texts, truncation=True, max_length={max_length}, padding=True, return_tensors="pt")\n'
            f"with torch.inference_mode(), {cast}:\n"
            "    probabilities = model(**inputs).logits.float().softmax(-1)\n"
            "predicted = [labels[i] for i in probabilities.argmax(-1).tolist()]\n"
            "print(predicted)\n"
        )
    if form.kind == "onnx-sequence-classification":
        return (
            head + "import onnxruntime\nfrom transformers import AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{form.path}")\n'
            f'session = onnxruntime.InferenceSession("{form.path}/{ONNX_FILE}")\n'
            "names = {node.name for node in session.get_inputs()}\n"
            f'inputs = tokenizer(texts, truncation=True, max_length={max_length}, padding=True, return_tensors="np")\n'
            "logits = session.run(None, {name: value for name, value in inputs.items() if name in names})[0]\n"
            "predicted = [labels[i] for i in logits.argmax(-1).tolist()]\n"
            "print(predicted)\n"
        )
    return None
