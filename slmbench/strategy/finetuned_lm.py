"""Fine-tuning the causal LM, shared by the weight-updating strategies: a trainable copy of the model
(``load_causal_lm``), fitting and predicting (``fit_causal_lm``, ``predict_causal_lm``) and their base
class ``FineTunedCausalLM``, so each strategy file only says what it trains.

The examples, their packed batches and their losses are in ``slmbench.lm.finetuning.batches``.

**Training** is ``slmbench.lm.finetuning.train_loop``'s (``train_model``): trl's ``SFTTrainer``, early stopping on
the validation loss, the best checkpoint restored. ``fit_causal_lm`` hands it the task's packed
examples and, for the validation loss, the scoring engine (``validation_by_scoring``).

**Prediction** of the causal-LM strategies goes through ``slmbench.lm.scoring.score_choices``, the
engine every strategy is judged by. Training and prediction (after a reload, of an export, of a
quantized copy) render prompts in the run's prompt format, ``context.models.prompt_format``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field

from slmbench.common.options import Options
from slmbench.lm.finetuning.batches import (
    SharedPrefixCollator,
    SoftPromptLM,
    causal_lm_loss,
    sft_dataset,
    soft_prompt,
    validation_by_scoring,
)
from slmbench.lm.finetuning.setup import TrainingSetup, compute_parameters
from slmbench.lm.finetuning.train_loop import train_model
from slmbench.lm.models import SharedModel
from slmbench.strategy.base import Strategy
from slmbench.strategy.metadata import Family
from slmbench.strategy.search_space import Search

if TYPE_CHECKING:
    from slmbench.lm.deployment import QuantizedCopy, Rebuild
    from slmbench.lm.memory_estimate import MemoryRequest, ModelShape, TrainingKind
    from slmbench.records import ExportForm, MemoryEstimate
    from slmbench.strategy.base import RunContext
    from slmbench.strategy.prompting import LMClassification
    from slmbench.tasks.examples import Examples, Predictions

CODE_VERSION_INCLUDES = (
    "slmbench.lm.finetuning.train_loop",
    "slmbench.lm.finetuning.setup",
    "slmbench.lm.finetuning.hf_trainer",
    "slmbench.lm.finetuning.batches",
)
"""Modules ``slmbench.strategy.registry.code_version`` hashes with this one: the training code its strategies run."""


# --- options -----------------------------------------------------------------------------------


class FineTuneOptions(Options):
    """Options of every strategy that trains weights with ``train_model``."""

    learning_rate: Annotated[float, Search.log(2e-4, 3e-3)] = Field(
        1e-3, gt=0, le=1, description="peak learning rate of AdamW (linear warmup, then decay)"
    )


# --- model loading -----------------------------------------------------------------------------


def load_causal_lm(
    context: RunContext, *, dtype: str | None = None, quantization_config: Any = None, weights: Path | None = None
) -> tuple[Any, Any]:
    """A trainable copy of the run's causal LM and its tokenizer, loaded by the strategy itself
    (``weights``: a folder of the same model's trained weights to load instead).

    Fine-tuning strategies never touch ``context.models.causal_lm()``: the shared model must stay
    frozen for the other strategies, and the copy loaded here is charged to this trial's memory.
    Half-precision runs load fp32 weights for training unless ``dtype`` says otherwise.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slmbench.lm.models import remote_code, torch_dtype

    path = context.models.causal_lm_path()
    trust = remote_code(path, context.models.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = dtype or ("float32" if context.dtype == "float16" else context.dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), "trust_remote_code": trust, "device_map": context.device}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    model = AutoModelForCausalLM.from_pretrained(str(weights or path), **kwargs)
    return model, tokenizer


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters, counting 4-bit packed weights by their logical size."""
    trainable = total = 0
    for parameter in model.parameters():
        n = parameter.numel()
        if parameter.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        trainable += n if parameter.requires_grad else 0
    return trainable, total


# --- training ----------------------------------------------------------------------------------


def fit_causal_lm(
    context: RunContext, model: Any, tokenizer: Any, train: Examples, validation: Examples, setup: TrainingSetup, *, description: str
) -> dict[str, Any]:
    """Fine-tune ``model`` on the task (answer-token loss, shared-prefix packing); return the trial details."""
    budget, prompt_format = context.budget, context.models.prompt_format  # the format predict_causal_lm scores in
    train_data = sft_dataset(context.task, tokenizer, train, budget.max_input_tokens, prompt_format)
    validation_data = sft_dataset(context.task, tokenizer, validation, budget.max_input_tokens, prompt_format)
    result = train_model(
        model,
        train_data,
        validation_data,
        setup,
        collator=SharedPrefixCollator(),
        batch_loss=causal_lm_loss,
        processing_class=tokenizer,
        progress=context.progress,
        description=description,
        validation=(
            partial(validation_by_scoring, batch_size=setup.eval_batch_size, bfloat16=setup.autocast is not None)
            if setup.score_validation
            else None
        ),
        on_validation_loss=context.on_validation_loss,
    )
    return result.details()


# --- prediction --------------------------------------------------------------------------------


def predict_causal_lm(context: RunContext, model: Any, tokenizer: Any, texts: Sequence[str]) -> LMClassification:
    """Classify ``texts`` with the shared scoring engine (a prompt-tuned model through ``SoftPromptLM``)."""
    from slmbench.strategy.prompting import classify_with_lm

    model.eval()
    return classify_with_lm(context, SoftPromptLM(model) if soft_prompt(model) is not None else model, tokenizer, texts)


# --- artifacts ---------------------------------------------------------------------------------


PEFT_WEIGHTS = "adapter_model.safetensors"
TRAINING_FILE = "training.json"


def save_peft_adapter(model: Any, directory: Path) -> None:
    """The adapter weights only (``adapter_model.safetensors``) and their config, never the base model."""
    model.save_pretrained(str(directory), safe_serialization=True)
    readme = directory / "README.md"  # peft's model-card stub: not part of the trained artifact
    if readme.exists():
        readme.unlink()


# --- the causal-LM fine-tuning strategies ------------------------------------------------------


class FineTunedCausalLM(Strategy):
    """Base of the strategies that fine-tune (part of) the causal LM; subclasses say what is trained.

    Their metadata says ``depends_on=(SharedModel.CAUSAL_LM,)`` and calls nothing: each trains its own
    copy of the causal LM (``load_causal_lm``); the shared one only fixes which model.

    ``fit``: ``build`` a trainable model and train it (``fit_causal_lm``); ``save`` writes what was
    trained, ``load`` rebuilds the trained model from it (``trained_model``). ``predict``: the
    shared scoring engine, on the model made ready once by ``for_prediction`` (e.g. an adapter merged).
    ``deployment_variants``: the predicting model quantized (``slmbench.lm.deployment``), rebuilt by
    ``deployment_rebuild``.
    """

    Options: ClassVar[type[Options]] = FineTuneOptions
    options: FineTuneOptions
    metadata_defaults: ClassVar[dict[str, Any]] = {"family": Family.PARAMETER_EFFICIENT, "depends_on": (SharedModel.CAUSAL_LM,)}
    deployment_reference: ClassVar[bool] = True
    """Whether the deployment check includes the unquantized model as its reference."""
    deployment_quantizations: ClassVar[tuple[str, ...]] = ("int8", "nf4")

    # --- memory, estimated before the trial runs (``slmbench.lm.memory_estimate``) ---

    trains: ClassVar[TrainingKind] = "adapter"
    """What training holds in memory: ``full`` (every weight, fp32), ``adapter`` (a frozen base and
    a small trained part) or ``quantized_adapter`` (the same on a 4-bit base)."""

    adapts_linear_layers: ClassVar[bool] = False
    """LoRA-like: a trained path beside every linear layer, keeping each one's input again (dropped
    out if the options have a ``dropout`` above 0)."""

    @classmethod
    def trained_parameters(cls, shape: ModelShape, options: Any) -> int:
        """Parameters the strategy trains on a model of ``shape`` (all of them for ``full``)."""
        return shape.parameters if cls.trains == "full" else 0

    @classmethod
    def estimate_memory(cls, request: MemoryRequest) -> MemoryEstimate:
        """Training its own copy of the causal LM (loaded in fp32 for ``full`` and under float16 runs,
        as ``load_causal_lm`` does), with the options' gradient checkpointing and optimizer if it has them."""
        from slmbench.lm.memory_estimate import ADAMW, TrainingPlan, estimate_training

        shape, options = request.causal_lm_shape(), request.options
        plan = TrainingPlan(
            kind=cls.trains,
            trained_parameters=cls.trained_parameters(shape, options),
            gradient_checkpointing=bool(getattr(options, "gradient_checkpointing", False)),
            optimizer=getattr(options, "optimizer", ADAMW),
            lora_dropout=getattr(options, "dropout", 0.0) if cls.adapts_linear_layers else None,
        )
        weights_dtype = "float32" if cls.trains != "adapter" or request.dtype == "float16" else request.dtype
        return estimate_training(request, shape, plan, weights_dtype=weights_dtype)

    def build(self) -> tuple[Any, Any]:
        """(trainable model, tokenizer), built from ``self.options``."""
        raise NotImplementedError

    def training(self) -> dict[str, Any]:
        """TrainingSetup fields other than the learning rate (optimizer, gradient checkpointing...)."""
        return {}

    def save(self, directory: Path) -> None:
        """The trained weights (``save_trained``) and what training did to the frozen ones (``training.json``)."""
        self.save_trained(directory)
        saved = {"frozen_linears_rounded_to": self.frozen_rounding}
        (directory / TRAINING_FILE).write_text(json.dumps(saved), encoding="utf-8")

    def save_trained(self, directory: Path) -> None:
        """Write the trained weights as safetensors: the adapter's only, for PEFT methods."""
        save_peft_adapter(self.model, directory)

    def load(self, directory: Path) -> None:
        import torch

        from slmbench.lm.finetuning.setup import round_frozen_linears

        self.model, self.tokenizer = self.trained_model(directory)
        rounding = json.loads((directory / TRAINING_FILE).read_text(encoding="utf-8"))["frozen_linears_rounded_to"]
        if rounding is not None:  # training stored the frozen layers in bfloat16: their weights came back rounded
            round_frozen_linears(self.model, getattr(torch, rounding))
        self.frozen_rounding = rounding
        self.trainable, self.total = count_parameters(self.model)
        self.predicting = False

    def trained_model(self, directory: Path) -> tuple[Any, Any]:
        """(model, tokenizer) as training left them, from what ``save`` wrote to ``directory``: by default
        the model built as for training (``build``) with the saved PEFT weights put in."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        model, tokenizer = self.build()
        set_peft_model_state_dict(model, load_file(str(directory / PEFT_WEIGHTS), device=str(model.device)))
        return model, tokenizer

    def for_prediction(self, model: Any) -> Any:
        """The trained model as it predicts (merged, repacked...), made once, after ``save``."""
        return model

    def prediction_model(self) -> Any:
        if not self.predicting:
            self.model, self.predicting = self.for_prediction(self.model), True
        return self.model

    def fit(self, train: Examples, validation: Examples) -> None:
        self.model, self.tokenizer = self.build()
        self.trainable, self.total = count_parameters(self.model)
        context = self.context
        setup = TrainingSetup.from_budget(
            context.budget,
            device=context.device,
            seed=context.seed,
            learning_rate=self.options.learning_rate,
            parameters=compute_parameters(context.models.causal_lm_path(), True, context.models.trust_remote_code),
            **self.training(),
        )
        details = fit_causal_lm(self.context, self.model, self.tokenizer, train, validation, setup, description=self.name)
        self.details = {**details, **self.details}
        self.train_examples_seen = min(details["train_examples_seen"], len(train))
        self.train_compute = details["train_compute"]
        self.frozen_rounding = "bfloat16" if details.get("frozen_bfloat16_layers") else None
        self.predicting = False

    def predict(self, texts: Sequence[str]) -> Predictions:
        result = predict_causal_lm(self.context, self.prediction_model(), self.tokenizer, texts)
        self.prompt_tokens_per_example = result.prompt_tokens_per_example
        self.details.update(result.details)
        return result.predictions

    def parameter_counts(self) -> tuple[int, int]:
        return self.trainable, self.total

    def predict_with(self, model: Any, texts: Sequence[str]) -> Predictions:
        """``model``'s predictions through the scoring engine, the trial's details untouched (deployment check)."""
        return predict_causal_lm(self.context, model, self.tokenizer, texts).predictions

    def export(self, directory: Path, quantize: str | None) -> list[ExportForm]:
        """The model as it predicts, a transformers folder with its tokenizer (``model/``): merged or fully
        trained weights, or the base it was trained on with the PEFT adapter beside it (``adapter/``,
        applied at load). With ``quantize``, that model quantized as the deployment check measured it
        (an adapter stays in full precision), where the library saves it without pickle."""
        import copy
        import shutil

        from peft import PeftModel

        from slmbench.lm.prompt_format import resolve_prompt_format
        from slmbench.records import ExportForm

        model = self.prediction_model()
        settings: dict[str, Any] = {}
        base: Any
        if isinstance(model, PeftModel):  # an adapter applied at load: the base as trained on, the adapter beside it
            save_peft_adapter(model, directory / "adapter")
            base = model.get_base_model() if model.active_peft_config.is_prompt_learning else copy.deepcopy(model).unload()
            settings["adapter"] = "adapter"
            description = "the base model as it was trained on, with the trained PEFT adapter in adapter/ applied at load"
        else:
            base = model
            description = "the trained model"
            adapter_files = [path for path in self.context.artifact_dir.iterdir() if path.name.startswith("adapter_")]
            if adapter_files:
                (directory / "adapter").mkdir()
                for path in adapter_files:
                    shutil.copy2(path, directory / "adapter" / path.name)
                description = (
                    "the trained model, its adapter merged into the weights (adapter/: the PEFT adapter it was merged from, "
                    "for the base model; never apply it to model/ again)"
                )
        base.save_pretrained(str(directory / "model"), safe_serialization=True)
        self.tokenizer.save_pretrained(str(directory / "model"))
        settings["dtype"] = str(base.dtype).removeprefix("torch.")
        # How it was trained to be asked: its chat template, or the plain-text prompt of slmbench.lm.prompt_format.
        settings["prompt_format"] = resolve_prompt_format(self.tokenizer, self.context.models.prompt_format)
        quantization = self._quantized_base(directory / "model", quantize)
        if quantization is not None:
            description += f", the base weights {quantization}"
        return [
            ExportForm(kind="transformers-causal-lm", path="model", description=description, quantization=quantization, settings=settings)
        ]

    def _quantized_base(self, folder: Path, quantize: str | None) -> str | None:
        """Replace the checkpoint in ``folder`` by its ``quantize`` form; the quantization the folder ends with."""
        import shutil

        from transformers import AutoModelForCausalLM

        from slmbench.lm.deployment import quantization_config
        from slmbench.lm.exported import save_quantized
        from slmbench.lm.models import torch_dtype
        from slmbench.strategy.base import QuantizationNotExported

        trained_in = "nf4" if self.trains == "quantized_adapter" else None
        if quantize is None or quantize == trained_in:
            return trained_in
        if trained_in is not None:
            raise QuantizationNotExported(f"{self.name} trained on a {trained_in} base, and is exported as such: not {quantize}")
        target = folder.with_name(f"{folder.name}-{quantize}")
        save_quantized(
            str(folder),
            AutoModelForCausalLM,
            quantization_config(quantize, self.context.device),
            torch_dtype(self.context.dtype),
            self.context.device,
            target,
        )
        self.tokenizer.save_pretrained(str(target))
        shutil.rmtree(folder)
        target.rename(folder)
        return quantize

    def form_predictor(self, form: ExportForm, directory: Path) -> Callable[[Sequence[str]], Predictions]:
        """A ``transformers-causal-lm`` form read by transformers (and peft), scored by the scoring engine."""
        if form.kind != "transformers-causal-lm":
            return super().form_predictor(form, directory)
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from slmbench.lm.models import torch_dtype

        folder = str(directory / form.path)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype(str(form.settings["dtype"])), device_map=self.context.device)
        adapter = form.settings.get("adapter")
        if isinstance(adapter, str):
            model = self.for_prediction(PeftModel.from_pretrained(model, str(directory / adapter)))
        return lambda texts: predict_causal_lm(self.context, model, tokenizer, texts).predictions

    def deployment_rebuild(self, scratch: Path) -> Rebuild:
        """A peft model: its adapter (or soft prompt) back on the quantized base model; any other
        model (merged adapter, fully trained): saved whole to ``scratch`` and quantized."""
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from slmbench.lm.deployment import Rebuild

        if not isinstance(self.model, PeftModel):
            self.model.save_pretrained(str(scratch), safe_serialization=True)
            return Rebuild(str(scratch), AutoModelForCausalLM, self.predict_with)
        directory = self.context.artifact_dir
        return Rebuild(
            self.context.models.causal_lm_path(),
            AutoModelForCausalLM,
            self.predict_with,
            attach=lambda base: self.for_prediction(PeftModel.from_pretrained(base, str(directory))),  # as the export reloads it
            attached_files=[path for path in directory.iterdir() if path.name.startswith("adapter_")],
        )

    def deployment_variants(self) -> list[QuantizedCopy]:
        from slmbench.lm.deployment import quantized_copies

        self.prediction_model()  # the model as it predicts (an adapter merged...), also when reloaded for the check
        return quantized_copies(
            self.deployment_rebuild, self.context.device, self.context.dtype, self.deployment_quantizations, self.deployment_reference
        )
