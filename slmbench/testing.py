"""A conformance kit for strategy authors: check a strategy against slmbench's protocol from pytest.

Two lines in a plugin's tests::

    from slmbench.testing import parametrize_with_checks

    @parametrize_with_checks([MyStrategy])
    def test_protocol(strategy, check):
        check(strategy)

(or ``check_strategy(MyStrategy)``, which runs every check and raises ``StrategyCheckError``). The
checks run the strategy through the real trial (``slmbench.engine.trial.run_trial``) on a tiny built-in
task, with tiny models built on the spot (a 2-layer Llama and a 2-layer BERT sentence encoder with
tokenizers trained on the task's words, no download), on the CPU, in seconds:

- ``check_registration``: name, description, family, options and search space as the registry wants
  them, and every value the search space can reach (range ends, choices) accepted by the options;
- ``check_light_import``: importing the strategy's module loads no heavy library (torch, transformers...);
- ``check_protocol``: a trial finishes ``ok``: one label in range per test text, probabilities of
  shape (texts, labels) summing to 1, plain-JSON ``details``, parameter counts, no pickle among the
  saved artifacts;
- ``check_reproducible``: the same seed gives the same predictions and probabilities.

``tiny_models``, ``toy_task_files`` and ``make_context`` are the same pieces, for a plugin's own tests.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from slmbench.strategy.base import RunContext, Strategy
from slmbench.tasks.examples import Examples

HEAVY_MODULES = ("torch", "transformers", "sklearn", "scipy", "matplotlib", "sentence_transformers", "peft", "faiss", "pandas")
"""What importing a strategy's module must not import: every slmbench command imports every plugin."""
LABELS = ("negative", "neutral", "positive")
WORDS = {
    "negative": ("fell", "loss", "cut", "weak", "lawsuit", "decline"),
    "neutral": ("meeting", "office", "announced", "located", "held", "appointed"),
    "positive": ("rose", "profit", "growth", "strong", "order", "record"),
}
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class StrategyCheckError(AssertionError):
    """A strategy broke the protocol; the message says which check and what was wrong."""


def toy_rows(per_label: int = 20) -> list[tuple[str, str]]:
    """(text, label) rows of the toy task: a sentence per row, its label's words mixed with common ones."""
    import random

    rng = random.Random(0)
    filler = ("the", "company", "said", "on", "tuesday", "that", "shares", "quarter", "its", "board")
    rows = []
    for i in range(per_label):
        for label, words in WORDS.items():
            sentence = [*rng.sample(filler, 4), *rng.sample(words, 2), f"item{i}"]
            rng.shuffle(sentence)
            rows.append((" ".join(sentence).capitalize() + ".", label))
    return rows


def toy_task_files(directory: Path) -> Path:
    """Write the toy task (``toy.yaml``) and its data (``toy.csv``) into ``directory``; return the YAML path."""
    import csv

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "toy.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(toy_rows())
    task = {
        "name": "toy-sentiment",
        "description": "Toy sentiment of short business sentences (slmbench.testing).",
        "source": {"file": "toy.csv"},
        "labels": [{"name": label, "description": f"words such as {', '.join(WORDS[label][:3])}"} for label in LABELS],
        "instruction": "Is this sentence good, bad or neutral news for the company?",
        "split": {"test_size": 0.25, "validation_size": 0.25, "seed": 1},
    }
    (directory / "toy.yaml").write_text(json.dumps(task, indent=1), encoding="utf-8")  # JSON is YAML
    return directory / "toy.yaml"


def _corpus() -> list[str]:
    from slmbench.tasks.spec import load_task

    with tempfile.TemporaryDirectory() as folder:
        task = load_task(toy_task_files(Path(folder)))
    prompt_words = [task.instruction, "Answer with exactly one of these labels:", "N/A [MASK]"]
    labels = [f"{label.verbalizer}: {label.description}" for label in task.labels]
    return [text for text, _ in toy_rows()] + prompt_words + labels


def _causal_lm(directory: Path) -> None:
    """A 2-layer Llama with a byte-level BPE tokenizer (and a chat template) trained on the toy task's words."""
    import torch
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2, tie_word_embeddings=True,
        pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, bos_token_id=fast.bos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    fast.save_pretrained(directory)


def _embedder(directory: Path) -> None:
    """A 2-layer BERT with a WordPiece tokenizer trained on the toy task, as a sentence-transformers folder
    (mean pooling, unit length), loadable as an encoder with a classification head too."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Normalize,
        Pooling,
        Transformer,
    )
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]  # a lazy alias in transformers 5

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=400, special_tokens=special, show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    fast = BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=128)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=128))
    encoder_dir = directory / "encoder"
    bert.save_pretrained(encoder_dir)
    fast.save_pretrained(encoder_dir)
    transformer = Transformer(str(encoder_dir), max_seq_length=128)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(directory))


@functools.lru_cache(maxsize=None)
def tiny_models(directory: Path | None = None) -> tuple[Path, Path]:
    """(causal LM folder, embedding model folder) of tiny models, built once per process (in ``directory``
    or a temporary folder). Pass them as ``--model`` / ``--embedding-model``, or to ``make_context``."""
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="slmbench-tiny-models-"))
    _causal_lm(root / "causal-lm")
    _embedder(root / "embedder")
    return root / "causal-lm", root / "embedder"


def make_context(
    strategy: type[Strategy], artifact_dir: Path, *, task: Any = None, models: Any = None, budget: Any = None,
    seed: int = 0, **options: Any,
) -> RunContext:
    """A RunContext for calling a strategy by hand: the toy task and tiny models unless given, the smoke
    profile, CPU, fp32, no progress bars; ``options`` set the strategy's options (validated)."""
    from slmbench.common.options import build_options
    from slmbench.common.progress import ProgressReporter
    from slmbench.lm.models import SharedModels
    from slmbench.tasks.profiles import get_profile
    from slmbench.tasks.spec import load_task

    if models is None:
        causal_lm, embedder = tiny_models()
        models = SharedModels(causal_lm_name=str(causal_lm), embedding_model_name=str(embedder))
    if task is None:
        task = load_task(toy_task_files(artifact_dir.parent / f"{artifact_dir.name}-task"))
    artifact_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        task=task, models=models, device="cpu", dtype="float32", seed=seed, budget=budget or get_profile("smoke"),
        artifact_dir=artifact_dir, progress=ProgressReporter(enabled=False),
        options=build_options(strategy.name, strategy.Options, options),
    )


def toy_splits() -> tuple[Examples, Examples, Examples]:
    """The toy task's train, validation and test examples (as the smoke profile splits them)."""
    from slmbench.tasks.profiles import get_profile
    from slmbench.tasks.spec import load_task
    from slmbench.tasks.splits import load_splits

    with tempfile.TemporaryDirectory() as folder:
        path = toy_task_files(Path(folder))
        splits = load_splits(load_task(path), path.parent, get_profile("smoke"))
    return splits.train, splits.validation, splits.test


# --- the checks -----------------------------------------------------------------------------------


def _fail(check: str, strategy: type[Strategy], problem: str) -> None:
    raise StrategyCheckError(f"{check} failed for {getattr(strategy, '__name__', strategy)}: {problem}")


def check_registration(strategy: type[Strategy]) -> None:
    """The class is what ``register`` accepts: a Strategy with name, description, family, valid options."""
    from slmbench.strategy.registry import _check_strategy

    try:
        _check_strategy(strategy)
    except Exception as error:  # noqa: BLE001 - reported as the check's failure
        _fail("check_registration", strategy, str(error))


def check_light_import(strategy: type[Strategy]) -> None:
    """Importing the strategy's module in a fresh interpreter loads none of ``HEAVY_MODULES``.

    The interpreter gets this one's ``sys.path``, so a module pytest or a test put on the path is found.
    """
    if strategy.__module__ == "__main__":
        _fail("check_light_import", strategy, "the class is defined in __main__: define it in an importable module")
    code = (
        f"import sys, importlib; importlib.import_module({strategy.__module__!r}); "
        f"print(sorted(set({HEAVY_MODULES!r}) & set(sys.modules)))"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environment)
    if result.returncode != 0:
        _fail("check_light_import", strategy, f"importing {strategy.__module__} failed: {result.stderr.strip()[-500:]}")
    loaded = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "[]"
    if loaded != "[]":
        _fail("check_light_import", strategy, f"importing {strategy.__module__} loads {loaded}: import them inside fit/predict")


def _trial(strategy: type[Strategy], seed: int = 0, inspect_artifacts: Callable[[Path], None] = lambda folder: None) -> Any:
    """The record of a real trial of ``strategy`` on the toy task; ``inspect_artifacts`` sees its
    artifact folder before the folder is deleted."""
    from slmbench import records
    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.model_cache import ModelCache
    from slmbench.engine.trial import run_trial
    from slmbench.tasks.profiles import get_profile

    causal_lm, embedder = tiny_models()
    with tempfile.TemporaryDirectory(prefix="slmbench-check-") as folder:
        task_path = toy_task_files(Path(folder) / "task")
        config = records.TrialConfig(
            strategy=strategy.name, task_path=str(task_path), data_dir=str(task_path.parent), profile=get_profile("smoke").to_dict(),
            seed=seed, models=records.ModelsConfig(causal_lm=str(causal_lm), embedding_model=str(embedder)),
        )
        record = run_trial(config, strategy, ModelCache(ProgressReporter(enabled=False)), Path(folder) / "artifacts")
        inspect_artifacts(Path(folder) / "artifacts")
        return record


PICKLE_OPCODE = 0x80
"""The first byte of every pickle of protocol 2 or later (torch.save, joblib and pickle.dump files)."""


def pickled_files(folder: Path) -> list[str]:
    """Files under ``folder`` (relative paths) that are pickles or zip archives holding one (torch.save)."""
    import zipfile

    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            start = handle.read(9)
        safetensors = start[8:9] == b"{"  # an 8-byte header length, then the JSON header
        pickled = len(start) >= 2 and start[0] == PICKLE_OPCODE and 2 <= start[1] <= 5 and not safetensors
        if not pickled and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickled = any(name.endswith(".pkl") for name in archive.namelist())
        if pickled:
            found.append(path.relative_to(folder).as_posix())
    return found


def check_protocol(strategy: type[Strategy]) -> None:
    """A real trial on the toy task finishes ``ok`` (the trial checks labels, probabilities and details),
    with sensible parameter counts and no pickled artifact."""
    pickles: list[str] = []
    record = _trial(strategy, inspect_artifacts=lambda folder: pickles.extend(pickled_files(folder)))
    if not record.ok:
        error = record.error
        _fail("check_protocol", strategy, f"the trial ended {record.status}: {error.type}: {error.message}" if error else record.status)
    trainable, total = record.cost.trainable_params, record.cost.total_params
    if not (0 <= trainable <= total or total == 0):
        _fail("check_protocol", strategy, f"parameter_counts() gave trainable {trainable} > total {total}")
    if pickles:
        _fail("check_protocol", strategy, f"artifacts saved as pickles: {', '.join(pickles)}: loading a pickle runs code; "
                                          "save tensors as safetensors and settings as JSON")


def check_reproducible(strategy: type[Strategy]) -> None:
    """Two trials with the same seed predict the same labels with the same probabilities (to 1e-4)."""
    import numpy as np

    first, second = _trial(strategy), _trial(strategy)
    if not (first.ok and second.ok):
        _fail("check_reproducible", strategy, "a trial did not finish ok (see check_protocol)")
    hint = "seed every random choice with context.seed, and keep no state between instances"
    if first.predictions.predicted != second.predictions.predicted:
        different = sum(a != b for a, b in zip(first.predictions.predicted, second.predictions.predicted))
        _fail("check_reproducible", strategy, f"{different} of {len(first.predictions.predicted)} predictions differ at the same seed: {hint}")
    if (first.predictions.probabilities is None) != (second.predictions.probabilities is None):
        _fail("check_reproducible", strategy, "one trial gave probabilities and the other none")
    if first.predictions.probabilities is not None:
        gap = float(np.abs(np.subtract(first.predictions.probabilities, second.predictions.probabilities)).max())
        if gap > 1e-4:
            _fail("check_reproducible", strategy, f"probabilities differ by up to {gap:.4g} at the same seed: {hint}")


CHECKS: tuple[Callable[[type[Strategy]], None], ...] = (check_registration, check_light_import, check_protocol, check_reproducible)


def check_strategy(strategy: type[Strategy]) -> None:
    """Run every check; raise StrategyCheckError listing every failure."""
    problems = []
    for check in CHECKS:
        try:
            check(strategy)
        except StrategyCheckError as error:
            problems.append(str(error))
    if problems:
        raise StrategyCheckError("\n".join(problems))


def parametrize_with_checks(strategies: list[type[Strategy]]) -> Any:
    """A ``pytest.mark.parametrize`` over (strategy, check): one test per check and strategy."""
    import pytest

    cases = [pytest.param(strategy, check, id=f"{strategy.name}-{check.__name__}") for strategy in strategies for check in CHECKS]
    return pytest.mark.parametrize(("strategy", "check"), cases)
