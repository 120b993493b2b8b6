"""The one schema of what slmbench writes to disk and reads back: trial and run records.

A run folder holds ``run.json`` (a ``RunRecord``), one JSON file per trial under ``trials/`` (a
``TrialRecord``) and ``test_texts.json``. ``slmbench.records.store`` is the only place that writes or
reads them:

- **Writing** is atomic: a temporary file in the same folder, flushed and fsynced, then renamed over
  the target; the temporary file is removed if anything fails, so a crash never leaves half a file.
- **Reading** accepts every older schema version (migrated on read by ``slmbench.records.migrations``) and
  ignores unknown fields, so records of older and newer slmbench versions load. A damaged file (not
  JSON, not an object, a string where a number belongs) raises ``RecordError`` naming the file and
  the field.
- **Paths** in records (task file, data folder) are stored relative to the run folder, so a run
  folder names no machine's absolute paths and can be moved together with its data.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeInt,
    field_serializer,
    model_validator,
)

SCHEMA_VERSION = 3
"""Version 1: slmbench 0.1 (untyped dicts). Version 2: typed records, seeds, options, variants. Version 3:
typed to the leaves (budget, run options, data, models, environment; calibration out of ``details``)."""
Status = Literal["ok", "failed", "timeout", "cancelled"]
OptionValue: TypeAlias = JsonValue
"""A strategy option's value as written: the built-in strategies' are JSON scalars (bool, int, float, str, None)."""
CalibrationMethod = Literal["batch", "content-free", "none"]
"""How a prompting strategy measures the LM's answer bias (see ``Calibration``)."""
PromptFormatName = Literal["auto", "chat", "completion"]
"""How prompts are rendered for the causal LM (``slmbench.lm.prompt_format``): its chat template, plain
text for a base model, or ``auto`` (chat when the tokenizer has a chat template)."""
MAX_RECORD_BYTES = 512 * 2**20
"""A record larger than this is refused unread (a trial of 100,000 test examples is about 10 MiB)."""
SAFE_NAME = re.compile(r'[\\/:*?"<>|\s\x00-\x1f]')


class RecordError(ValueError):
    """A record file cannot be read or is damaged; the message names the file and the problem."""


class Record(BaseModel):
    """Base of every record: unknown fields are ignored (newer writers), assignments are validated."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)


# --- trial records --------------------------------------------------------------------------------


class ErrorInfo(Record):
    type: str
    message: str = ""
    traceback: str = ""


class ClassMetrics(Record):
    precision: float
    recall: float
    f1: float
    support: int


class Metrics(Record):
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    """Rows are gold labels, columns predicted labels, both in task order."""


class Latency(Record):
    """Latency of single requests: one text per ``predict`` call, on a sample of test texts."""

    p50_ms: float
    p95_ms: float
    requests: int


class Cost(Record):
    train_seconds: float | None = None
    predict_seconds: float | None = None
    latency_ms_per_example: float | None = None
    """Batched: the test split's prediction time divided by its size."""
    throughput_examples_per_second: float | None = None
    single_request: Latency | None = None
    peak_memory_mb: float | None = None
    """Peak memory of the trial where its models run, shared models included: host resident memory on
    the CPU, the accelerator's reserved memory on a GPU (what ``--max-memory-mb`` is compared with)."""
    peak_host_memory_mb: float | None = None
    """Peak resident host memory the trial added, shared models' host share included."""
    peak_accelerator_memory_mb: float | None = None
    """Peak memory reserved on the trial's accelerator (torch's caching allocator), shared models
    included; None on the CPU."""
    estimated_memory_mb: float | None = None
    """The memory the trial was estimated to need before it ran (``TrialRecord.memory_estimate``)."""
    trainable_params: int | None = None
    total_params: int | None = None
    artifact_bytes: int | None = None


class PredictionRecord(Record):
    """Per example: gold label index, predicted index and (when the strategy gives them) probabilities."""

    gold: list[NonNegativeInt]
    predicted: list[NonNegativeInt]
    probabilities: list[list[float]] | None = None

    @model_validator(mode="after")
    def _one_per_example(self) -> PredictionRecord:
        if len(self.predicted) != len(self.gold) or (self.probabilities is not None and len(self.probabilities) != len(self.gold)):
            raise ValueError("gold, predicted and probabilities must have one entry per example")
        return self

    def check_labels(self, n_labels: int) -> None:
        """A ValueError unless every index names one of ``n_labels`` labels and every row has a probability per label."""
        if any(index >= n_labels for index in (*self.gold, *self.predicted)):
            raise ValueError(f"a label index is not below the {n_labels} labels")
        if self.probabilities is not None and any(len(row) != n_labels for row in self.probabilities):
            raise ValueError(f"a row of probabilities does not have {n_labels} entries")


class ModelsConfig(Record):
    """The shared models of a trial and where they run."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    causal_lm: str
    embedding_model: str
    device: str = "cpu"
    dtype: str = "float32"
    trust_remote_code: bool = False
    prompt_format: PromptFormatName = "auto"
    """As asked for in a trial's config; as resolved (``chat`` or ``completion``) in the record of a
    trial that used the causal LM."""


class Budget(Record):
    """Caps applied identically to every strategy of a run (``None`` means no cap): a profile."""

    model_config = ConfigDict(frozen=True)

    name: str
    max_train_examples: int | None
    max_validation_examples: int | None
    max_test_examples: int | None
    max_input_tokens: int
    """Texts are truncated to this many tokens before they enter a language-model prompt."""
    max_train_steps: int | None
    """Optimizer steps for weight-updating strategies. With a cap (and ``max_train_tokens``) every
    fine-tuning strategy gets the same training *compute*; without one, each trains ``train_epochs``
    passes over the train split (early stopping aside): the same *examples*."""
    batch_size: int
    eval_every_steps: int | None = None
    """Weight-updating strategies measure the validation loss every this many optimizer steps (and
    before the first and after the last); ``None`` means once per epoch. It picks the checkpoint kept."""
    early_stopping_patience: int | None = None
    """Stop training after this many validation measurements without improvement (``None``: never)."""
    max_train_tokens: int | None = None
    """Compute cap of weight-updating strategies, with ``max_train_steps`` (the lower wins): tokens
    run through the model in training (a prompt prefix shared by a batch counts once). Long texts
    get fewer steps than short ones for the same cost."""
    max_validation_tokens: int | None = None
    """The validation loss is measured on the first validation examples up to this many tokens."""
    train_epochs: float = 3.0
    """Passes over the train split when ``max_train_steps`` is None."""
    compute_parameters: int | None = None
    """The step and token caps are those of a model with this many parameters in its blocks' linear
    layers (``slmbench.lm.finetuning.setup.compute_parameters``, embeddings left out): a model N times
    larger gets N times fewer steps and tokens, a smaller one more, so every weight-updating strategy's
    compute cap (tokens times its own model's parameters) is the same whatever the model (None: the
    caps as they are, for any model)."""
    tuning_trials: int = 1
    """Option settings every strategy may try, chosen on validation accuracy (``slmbench.engine.tuning``); 1: defaults only."""
    latency_requests: int = 20
    """Test texts predicted one at a time for the single-request latency (p50, p95)."""


class TrialConfig(Record):
    """Everything that determines a trial's result; its hash decides whether a finished trial is reused.

    ``task_path`` and ``data_dir`` say where to find the inputs and are left out of the hash: the
    task and the data enter it by content (``task_sha256``, ``data_sha256``), so moving them reruns
    nothing while editing them reruns everything.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    strategy: str
    task: str = ""
    task_path: str
    task_sha256: str = ""
    data_dir: str | None = None
    allow_outside_data_dir: bool = Field(False, exclude=True)
    """The task may read a data file outside ``data_dir`` and its own folder (``--allow-outside-data-dir``):
    never written, so every command that reads such a file opts in again."""
    data_sha256: str = ""
    profile: Budget
    seed: NonNegativeInt = 0
    models: ModelsConfig
    options: dict[str, OptionValue] = Field(default_factory=dict)
    """The options set by the user or the sweep; the strategy's defaults fill in the rest."""
    code_version: str = ""
    """slmbench's version and a hash of the strategy's source files: edited code is a new config."""
    train_size: int | None = None
    """Learn from a nested stratified subset of this many train examples (a learning-curve point)."""
    inputs: dict[str, str] = Field(default_factory=dict)
    """For a strategy that combines others: their trial keys and config hashes (a changed member reruns it)."""

    def config_hash(self) -> str:
        identity = self.model_dump(mode="json", exclude={"task_path", "data_dir"})
        if identity["models"]["prompt_format"] == "auto":  # the default: trials from before the option keep their hash, and are reused
            del identity["models"]["prompt_format"]
        if identity["profile"].get("compute_parameters") is None:  # likewise for profiles without compute scaling
            identity["profile"].pop("compute_parameters", None)
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class TuningTrial(Record):
    """One option setting a strategy tried, scored on the validation split."""

    options: dict[str, OptionValue]
    validation_accuracy: float | None
    state: str = "complete"
    """``complete``, ``pruned`` (stopped early by the search) or ``failed``."""
    seconds: float | None = None


class Tuning(Record):
    """The search over option settings, on the validation split only."""

    method: str
    budget: int
    """Settings the profile allows every strategy to try."""
    chosen: dict[str, OptionValue]
    tried: list[TuningTrial]


class DeploymentCheck(Record):
    """The trained model quantized for deployment, scored on the same test split."""

    quantization: str
    accuracy: float | None = None
    macro_f1: float | None = None
    size_bytes: int | None = None
    latency_ms_per_example: float | None = None
    single_request: Latency | None = None
    error: str | None = None
    seconds: float | None = None
    """Wall time of this copy's check: rebuilt, saved, scored and timed (None in records before it was kept)."""


class Calibration(Record):
    """A prompting strategy's prior correction: p(label | text) ∝ p_LM(label | text) / bias(label) * prior(label).

    ``bias`` is the LM's own preference among the answers whatever the text, its mean answer distribution
    over inputs (``batch``: unlabelled train texts, Zhou et al. 2023, "Batch Calibration"; ``content-free``:
    inputs such as "N/A", Zhao et al. 2021); ``prior`` is the label distribution to restore (the train
    split's label frequencies for strategies that see labels; None: uniform). ``none`` leaves the
    probabilities as the LM gives them. Both are written rounded to 4 decimals.
    """

    model_config = ConfigDict(frozen=True)

    method: CalibrationMethod
    bias: tuple[float, ...] | None = None
    prior: tuple[float, ...] | None = None

    @field_serializer("bias", "prior")
    def _rounded(self, values: tuple[float, ...] | None) -> list[float] | None:
        return None if values is None else [round(value, 4) for value in values]


class CpuFeatures(Record):
    """The CPU's bf16 matrix units (AMX, AVX512-BF16) and AVX-512, and torch's name for what it uses."""

    amx: bool | None = None
    avx512_bf16: bool | None = None
    avx512: bool | None = None
    torch_capability: str | None = None


class Hardware(Record):
    """The CPU, torch's threads and the fp32/bf16 matmul peaks measured in the process (GFLOP/s by dtype)."""

    cpu_model: str | None = None
    cpu_features: CpuFeatures | None = None
    torch_threads: int | None = None
    matmul_peak_gflops: dict[str, float] = Field(default_factory=dict)


class Accelerator(Record):
    """The GPU a run or trial used: what the report and a reader comparing runs need to know of it."""

    name: str
    memory_mb: float
    compute_capability: str
    """``major.minor`` (8.0: A100, 9.0: H100, 7.5: T4)."""
    count: int = 1
    """GPUs visible to the process."""
    cuda_version: str | None = None
    """The CUDA version torch was built with."""
    driver_version: str | None = None
    bf16_native: bool = False
    """Whether the GPU multiplies bfloat16 natively (compute capability 8.0 or above)."""


class Determinism(Record):
    """The settings that decide whether a seed reproduces bit for bit on an accelerator."""

    deterministic_algorithms: bool = False
    cudnn_deterministic: bool = False
    cudnn_benchmark: bool = False
    tf32_matmul: bool = False
    cublas_workspace_config: str | None = None


class Environment(Record):
    """What a run or trial ran on: Python, platform, CPU, hardware and the versions of the packages that matter."""

    python: str | None = None
    platform: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    hardware: Hardware | None = None
    accelerator: Accelerator | None = None
    """The GPU, when the trial (or run) had one."""
    node: str | None = None
    """The Ray node that ran the trial (its node id), when a cluster ran it."""
    determinism: Determinism | None = None
    packages: dict[str, str] = Field(default_factory=dict)


def seconds_between(started_at: str | None, finished_at: str | None) -> float | None:
    """Seconds between two ISO timestamps of records, or None when either is missing or not one."""
    if started_at is None or finished_at is None:
        return None
    try:
        return (datetime.fromisoformat(finished_at) - datetime.fromisoformat(started_at)).total_seconds()
    except (TypeError, ValueError):
        return None


class MemoryEstimate(Record):
    """A trial's memory where its models run, estimated from the models' configs before it runs (MiB).

    ``fits`` compares ``total_mb`` with ``device_memory_mb``; when it does not fit, ``remedies`` says
    what would make it fit (gradient checkpointing, a paged 8-bit optimizer, a smaller batch, qlora).
    """

    device: str
    weights_mb: float = 0.0
    """Weights of the model the trial trains or runs (its own copy), at the dtype they are held in."""
    gradients_mb: float = 0.0
    optimizer_mb: float = 0.0
    activations_mb: float = 0.0
    """At the profile's batch size and input length."""
    shared_models_mb: float = 0.0
    """The shared models the trial calls (loaded once per process, but resident while it runs)."""
    total_mb: float = 0.0
    device_memory_mb: float | None = None
    """What the device offers (None: unknown)."""
    fits: bool | None = None
    """None: the device's memory is unknown."""
    remedies: list[str] = Field(default_factory=list)
    applied: list[str] = Field(default_factory=list)
    """Changes slmbench made itself so it fits (e.g. gradient checkpointing turned on)."""


class TrialRecord(Record):
    """One strategy, fitted and evaluated once: ``trials/<variant>.seed<seed>.json``."""

    schema_version: int = SCHEMA_VERSION
    strategy: str
    variant: str = ""
    """The row this trial belongs to in the report: the strategy, plus the sweep's options that vary."""
    status: Status = "failed"
    error: ErrorInfo | None = None
    task: str | None = None
    labels: list[str] = Field(default_factory=list)
    description: str | None = None
    family: str | None = None
    config: TrialConfig | None = None
    config_hash: str = ""
    options: dict[str, OptionValue] = Field(default_factory=dict)
    """Every option value the strategy ran with (its defaults included)."""
    train_examples: int | None = None
    """Size of the train split (or learning-curve subset) the trial was given."""
    validation_examples: int | None = None
    labelled_examples: int | None = None
    """Labelled examples the strategy needs: train + validation unless it uses fewer (few-shot, zero-shot)."""
    train_examples_seen: int | None = None
    """Distinct train examples the strategy actually learnt from (a capped fine-tune sees fewer)."""
    train_compute: float | None = None
    """A weight-updating strategy's training compute: tokens run through its model in training times
    that model's ``compute_parameters`` (``Budget.compute_parameters`` gives every model the same cap)."""
    learns_from_train: bool = True
    prompt_tokens_per_example: float | None = None
    calibration: Calibration | None = None
    """How a prompting strategy corrected the LM's answer bias (None: it prompts no LM, or says nothing)."""
    metrics: Metrics | None = None
    cost: Cost = Field(default_factory=Cost)
    predictions: PredictionRecord | None = None
    validation_predictions: PredictionRecord | None = None
    """Predictions on the validation split, kept for strategies that combine others (ensemble)."""
    tuning: Tuning | None = None
    deployment: list[DeploymentCheck] = Field(default_factory=list)
    memory_estimate: MemoryEstimate | None = None
    resources: dict[str, float] = Field(default_factory=dict)
    """What the trial asked its executor for (Ray: ``CPU`` threads, its ``GPU`` share); empty when it ran locally."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Free-form, strategy-specific figures (loss curves, prompt plans...)."""
    models: ModelsConfig | None = None
    environment: Environment = Field(default_factory=Environment)
    started_at: str | None = None
    finished_at: str | None = None

    @model_validator(mode="after")
    def _predictions_name_labels(self) -> TrialRecord:
        for predictions in (self.predictions, self.validation_predictions):
            if predictions is not None and self.labels:
                predictions.check_labels(len(self.labels))
        return self

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.metrics is not None

    @property
    def seed(self) -> int:
        return self.config.seed if self.config else 0

    @property
    def train_size(self) -> int | None:
        return self.config.train_size if self.config else None

    @property
    def name(self) -> str:
        """The variant's name (the strategy's when no option varies)."""
        return self.variant or self.strategy

    @property
    def wall_seconds(self) -> float | None:
        """Seconds from the trial's start to its record (loading, search, training, prediction, single requests;
        the deployment check comes after the trials, ``DeploymentCheck.seconds``)."""
        return seconds_between(self.started_at, self.finished_at)


# --- exports -------------------------------------------------------------------------------------


FormKind = Literal[
    "slmbench",
    "skops-pipeline",
    "sentence-transformers-skops",
    "transformers-sequence-classification",
    "onnx-sequence-classification",
    "transformers-causal-lm",
]
"""What loads an exported form: slmbench itself (``slmbench predict EXPORT_DIR``), a scikit-learn
pipeline in skops, a sentence-transformers model with a skops head, a transformers
sequence-classification folder, its ONNX copy (onnxruntime), or a transformers causal LM that
slmbench's prompt scoring reads (with a PEFT adapter alongside where one was trained)."""


class ExportForm(Record):
    """One form of an exported trial: where it is in the export folder and what loads it."""

    kind: FormKind
    path: str
    """A folder or file, relative to the export folder."""
    description: str
    quantization: str | None = None
    """None: the weights as trained (the trial's own precision)."""
    settings: dict[str, JsonValue] = Field(default_factory=dict)
    """What predicting with it needs besides its files (input length, autocast, the head's file...)."""


class ExportManifest(Record):
    """``slmbench-export.json``: an exported trial, its forms, and where it came from."""

    schema_version: int = SCHEMA_VERSION
    trial: str
    """The trial's key, under ``slmbench/trials/`` and ``slmbench/artifacts/`` of the export."""
    strategy: str
    name: str
    seed: int
    task: str
    labels: list[str]
    text_column: str
    source_run: str
    """The run folder's name (never a machine's path)."""
    exported_at: str
    slmbench_version: str
    quantize: str | None = None
    forms: list[ExportForm] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    """What was not exported and why (a quantization that cannot be saved safely...)."""
    training_texts: str | None = None
    """What training text the export contains (demonstrations, a retrieval index), if any."""


class FormParity(Record):
    """One exported form, reloaded from the export alone and scored on the test split."""

    kind: FormKind
    path: str
    quantization: str | None = None
    agreement: float | None = None
    """Share of test examples on which it predicts the trial's own label."""
    accuracy: float | None = None
    size_bytes: int | None = None
    single_request: Latency | None = None
    error: str | None = None


class ExportParity(Record):
    """The export check of one trial: every form of its export."""

    trial: str
    name: str
    seed: int
    forms: list[FormParity] = Field(default_factory=list)
    error: str | None = None
    """Why the trial could not be exported at all."""


class ExportChecks(Record):
    """``export_check.json`` of a run folder: the export check of the trials it covered."""

    schema_version: int = SCHEMA_VERSION
    checked: Literal["recommended", "all"] = "recommended"
    trials: list[ExportParity] = Field(default_factory=list)


# --- run records ----------------------------------------------------------------------------------


class SplitSummary(Record):
    sizes: dict[str, int] = Field(default_factory=dict)
    full_sizes: dict[str, int] = Field(default_factory=dict)
    """Split sizes before the profile's caps."""
    per_class: dict[str, dict[str, int]] = Field(default_factory=dict)
    duplicates_removed: dict[str, int] = Field(default_factory=dict)


class Floors(Record):
    """What a strategy must beat to be worth anything: always answering the train split's majority label."""

    majority_label: str
    accuracy: float
    macro_f1: float


class Reference(Record):
    """A published result on the task (from its YAML), shown in reports beside the measured ones."""

    model_config = ConfigDict(frozen=True)

    system: str
    metric: str
    value: float
    source: str


class HubSource(Record):
    """A task's public Hugging Face dataset (its YAML's ``source.hub``), for users who are online."""

    model_config = ConfigDict(frozen=True)

    path: str
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    data_dir: str | None = None
    """Folder of the dataset repository to load (``load_dataset(..., data_dir=)``)."""
    text_column: str | None = None
    """The hub copy's text column when it differs from the task's ``text_column``."""
    label_column: str | None = None
    """The hub copy's label column when it differs from the task's ``label_column``."""


class DataProvenance(Record):
    """Where a run's rows came from (the local file, by name and hash, or the hub dataset) and what was read."""

    source: Literal["file", "hub"] | None = None
    file: str | None = None
    """The file's name in a run record (the full path while the data is read)."""
    sha256: str | None = None
    hub: HubSource | None = None
    rows: int | None = None
    content_sha256: str | None = None
    """A hash of the texts and label indices read, whatever the file format."""
    texts_with_conflicting_labels: int | None = None


class RunModels(Record):
    """The models a run's strategies use (a trial per model where several are given) and where they run."""

    causal_lm: list[str] = Field(default_factory=list)
    embedding_model: list[str] = Field(default_factory=list)
    device: str | None = None
    dtype: str | None = None


class RunOptionsRecord(Record):
    """What a run was asked to do, as ``run.json`` stores it (``slmbench run --resume`` starts from it);
    ``slmbench.engine.run_options.RunOptions`` is this, with the embedded models as defaults."""

    task: str
    strategies: str = "all"
    profile: str = "quick"
    data_dir: str | None = None
    output: str = "runs"
    seeds: list[int] = Field(default_factory=lambda: [0])
    options: dict[str, dict[str, list[OptionValue]]] = Field(default_factory=dict)
    """Strategy -> option -> values to try (``--set`` gives one value; a sweep file a grid)."""
    models: list[str] | None = None
    """Causal LMs, a trial for each (None: not recorded; ``RunOptions`` runs the embedded one)."""
    embedding_models: list[str] | None = None
    """Embedding models, a trial for each (None: not recorded; ``RunOptions`` runs the embedded one)."""
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    prompt_format: PromptFormatName = "auto"
    run_id: str | None = None
    trial_timeout: float | None = None
    train_sizes: list[int] = Field(default_factory=list)
    """Learning curve: smaller train sizes each strategy also runs at (the whole split always runs)."""
    tuning_trials: int | None = None
    """Option settings every strategy may try on validation (default: the profile's)."""
    keep_artifacts: Literal["all", "none"] = "all"
    """Keep every trial's artifacts for ``slmbench predict`` (all), or delete them once it is scored (none)."""
    export_check: Literal["recommended", "all", "none"] = "recommended"
    """After the trials: export the recommended trial (or every reusable one), reload each exported form
    from the export alone and score it on the test split (``export_check.json``)."""
    deployment_check: Literal["contenders", "all", "none"] | None = None
    """After the trials: quantized copies of the contenders' models (``slmbench.report.contenders``), of
    every weight-updating strategy's (all) or of none, scored on the test split (each trial's ``deployment``).
    None: not recorded (runs before it was an option checked every strategy, inside its trial)."""


class RunRecord(Record):
    """A run folder's ``run.json``: the task, protocol, data and environment every trial shares."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    task: str
    task_path: str | None = None
    commands: list[str] = Field(default_factory=list)
    """Every command that added to the run folder, in the order first used."""
    options: RunOptionsRecord | None = None
    """The run's options as last given (``slmbench run --resume`` starts from them)."""
    profile: Budget | None = None
    seeds: list[NonNegativeInt] = Field(default_factory=lambda: [0])
    labels: list[str] = Field(default_factory=list)
    strategies: list[str] = Field(default_factory=list)
    splits: SplitSummary = Field(default_factory=SplitSummary)
    data: DataProvenance | None = None
    floors: Floors | None = None
    models: RunModels = Field(default_factory=RunModels)
    references: list[Reference] = Field(default_factory=list)
    environment: Environment = Field(default_factory=Environment)
    started_at: str | None = None
