"""encoder-finetune: the embedding model's BERT encoder with a classification head, fully fine-tuned.

The classic recipe the decoder strategies are measured against: every weight of the encoder
(all-MiniLM-L6-v2 by default, loaded from ``embedding_model_path()`` as a sequence classifier with
a fresh head) is trained with cross-entropy on the labels. Texts are truncated to the budget's
``max_input_tokens`` (and the encoder's own limit); batches are padded dynamically and grouped by
length. Validation loss, early stopping, best checkpoint and bfloat16 autocast are those of the
other fine-tuning strategies (``slmbench.lm.finetuning.train_loop``). It predicts with its own head, not the LM
scoring engine. The artifact is the whole fine-tuned encoder with its tokenizer, a transformers
sequence-classification folder (``model.safetensors``); the deployment check quantizes it
(``slmbench.lm.deployment``) and predicts with the same loop.

The profile's step and token caps are those of a model of ``Budget.compute_parameters`` (quick:
SmolLM2-135M's 106M in linear layers). Training compute is about 6 x parameters x tokens, so an
encoder k times smaller (all-MiniLM-L6-v2: 10.8M, k = 9.9) gets k times the steps and tokens: the
same compute, recorded as ``compute_scale``, whichever causal LM the run uses. Without it, 60 steps leave the new
classification head undertrained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from slmbench.records import ExportForm
from slmbench.strategy import Examples, Family, Predictions, Search, SharedModel, Strategy, StrategyMetadata, hookimpl
from slmbench.strategy.finetuned_lm import FineTuneOptions

if TYPE_CHECKING:
    from slmbench.lm.memory_estimate import MemoryRequest
    from slmbench.records import MemoryEstimate

PREDICT_BATCH = 64
SETTINGS_FILE = "encoder.json"


class EncoderFinetuneOptions(FineTuneOptions):
    learning_rate: Annotated[float, Search.log(3e-5, 3e-4)] = Field(
        1e-4, gt=0, le=1, description="peak learning rate of AdamW (linear warmup, then decay)"
    )
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW weight decay")


class EncoderFinetune(Strategy):
    metadata = StrategyMetadata(
        name="encoder-finetune",
        description="The embedding model's BERT encoder + a classification head, fully fine-tuned",
        family=Family.FULL,
        depends_on=(SharedModel.EMBEDDER,),
    )
    """Trains its own copy of the embedding model, with a compute budget of its own (whatever the causal LM)."""

    Options = EncoderFinetuneOptions
    options: EncoderFinetuneOptions
    derived_from = (SharedModel.EMBEDDER,)

    @classmethod
    def estimate_memory(cls, request: MemoryRequest) -> MemoryEstimate:
        """Every weight of its own fp32 copy of the embedding model trained with AdamW; it calls no shared model."""
        from slmbench.lm.memory_estimate import TrainingPlan, estimate_training

        shape = request.embedding_model_shape()
        return estimate_training(request, shape, TrainingPlan("full", shape.parameters), weights_dtype="float32", causal_lm=False)

    def _dataset(self, texts: Sequence[str], labels: Sequence[int] | None = None) -> Any:
        from datasets import Dataset

        input_ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        columns = {"input_ids": input_ids, "length": [len(ids) for ids in input_ids]}
        columns["label"] = list(labels) if labels is not None else [0] * len(input_ids)
        return Dataset.from_dict(columns)

    def fit(self, train: Examples, validation: Examples) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from slmbench.lm.finetuning.batches import (
            PaddingCollator,
            sequence_classification_loss,
        )
        from slmbench.lm.finetuning.setup import TrainingSetup, compute_parameters
        from slmbench.lm.finetuning.train_loop import train_model
        from slmbench.lm.models import remote_code

        path = self.context.models.embedding_model_path()
        names = self.context.task.label_names
        trust = remote_code(path, self.context.models.trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={name: i for i, name in enumerate(names)},
            trust_remote_code=trust,
        ).to(self.context.device)
        self.max_length = min(
            self.context.budget.max_input_tokens,
            self.tokenizer.model_max_length,
            self.model.config.max_position_embeddings,
        )
        setup = TrainingSetup.from_budget(
            self.context.budget,
            device=self.context.device,
            seed=self.context.seed,
            learning_rate=self.options.learning_rate,
            parameters=compute_parameters(path, False, self.context.models.trust_remote_code),
            weight_decay=self.options.weight_decay,
            group_by_length=True,
        )
        result = train_model(
            self.model,
            self._dataset(train.texts, train.labels),
            self._dataset(validation.texts, validation.labels),
            setup,
            collator=PaddingCollator(self.tokenizer),
            batch_loss=sequence_classification_loss,
            processing_class=self.tokenizer,
            progress=self.context.progress,
            description=self.name,
            sft=False,
            on_validation_loss=self.context.on_validation_loss,
        )
        self.autocast = setup.autocast
        self.details = {**result.details(), "max_input_tokens": self.max_length}
        self.train_examples_seen = min(result.examples_seen, len(train))
        self.train_compute = self.details["train_compute"]

    def save(self, directory: Path) -> None:
        """The fine-tuned encoder and its tokenizer (a transformers sequence-classification folder) and
        how it predicts (``encoder.json``: the input length, the autocast dtype)."""
        self.model.save_pretrained(str(directory), safe_serialization=True)
        self.tokenizer.save_pretrained(str(directory))
        autocast = None if self.autocast is None else str(self.autocast).removeprefix("torch.")
        saved = {"max_input_tokens": self.max_length, "autocast": autocast}
        (directory / SETTINGS_FILE).write_text(json.dumps(saved), encoding="utf-8")

    def load(self, directory: Path) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from slmbench.lm.models import remote_code

        saved = json.loads((directory / SETTINGS_FILE).read_text(encoding="utf-8"))
        self.max_length = saved["max_input_tokens"]
        self.autocast = None if saved["autocast"] is None else getattr(torch, saved["autocast"])
        trust = remote_code(str(directory), self.context.models.trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(directory), trust_remote_code=trust).to(self.context.device)

    def export(self, directory: Path, quantize: str | None) -> list[ExportForm]:
        """A transformers sequence-classification folder with its tokenizer (``model/``) and its ONNX copy
        (``onnx/``); with ``quantize``, the folder quantized as the deployment check measured it, and no ONNX."""
        import copy

        from transformers import AutoModelForSequenceClassification

        from slmbench.lm.deployment import quantization_config
        from slmbench.lm.exported import export_onnx, save_quantized
        from slmbench.lm.models import torch_dtype

        autocast = None if self.autocast is None else str(self.autocast).removeprefix("torch.")
        settings: dict[str, Any] = {"max_length": self.max_length, "autocast": autocast}
        description = "the fine-tuned encoder with its classification head and tokenizer"
        if quantize is not None:
            config = quantization_config(quantize, self.context.device, keep=["classifier"])
            save_quantized(
                str(self.context.artifact_dir),
                AutoModelForSequenceClassification,
                config,
                torch_dtype(self.context.dtype),
                self.context.device,
                directory / "model",
            )
            self.tokenizer.save_pretrained(str(directory / "model"))
            form = ExportForm(
                kind="transformers-sequence-classification",
                path="model",
                description=f"{description}, {quantize}",
                quantization=quantize,
                settings=settings,
            )
            return [form]
        self.model.save_pretrained(str(directory / "model"), safe_serialization=True)
        self.tokenizer.save_pretrained(str(directory / "model"))
        export_onnx(copy.deepcopy(self.model), self.tokenizer, directory / "onnx", self.max_length)
        return [
            ExportForm(kind="transformers-sequence-classification", path="model", description=description, settings=settings),
            ExportForm(
                kind="onnx-sequence-classification",
                path="onnx",
                description="the same model in ONNX (torch.onnx, float32), for onnxruntime",
                quantization=None if autocast is None else "float32",  # the trial predicted under autocast: other arithmetic
                settings={"max_length": self.max_length},
            ),
        ]

    def predict(self, texts: Sequence[str]) -> Predictions:
        return self.predict_with(self.model, texts)

    def predict_with(self, model: Any, texts: Sequence[str]) -> Predictions:
        """``model``'s predictions (this strategy's model or a quantized copy of it)."""
        import numpy as np
        import torch

        from slmbench.lm.finetuning.batches import PaddingCollator

        data = self._dataset(texts)
        order = np.argsort(data["length"])
        collate = PaddingCollator(self.tokenizer)
        probabilities = np.zeros((len(texts), len(self.context.task.labels)))
        batches = [order[i : i + PREDICT_BATCH] for i in range(0, len(order), PREDICT_BATCH)]
        device = self.context.device
        autocast = torch.autocast(torch.device(device).type, dtype=self.autocast, enabled=self.autocast is not None)
        model.eval()
        with torch.inference_mode(), autocast:
            for batch in self.context.progress.track(batches, f"{self.name}: predicting"):
                inputs = collate([data[int(i)] for i in batch])["inputs"]
                logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits
                probabilities[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        n = sum(p.numel() for p in self.model.parameters())
        return n, n

    def deployment_variants(self) -> list[Any]:
        from transformers import AutoModelForSequenceClassification

        from slmbench.lm.deployment import Rebuild, quantized_copies

        def rebuild(scratch: Path) -> Rebuild:  # the artifact is the whole model (save); its new head stays as trained
            return Rebuild(str(self.context.artifact_dir), AutoModelForSequenceClassification, self.predict_with, keep=["classifier"])

        return quantized_copies(rebuild, self.context.device, self.context.dtype)


@hookimpl
def register_strategies(register) -> None:
    register(EncoderFinetune)
