"""The kit's toy task and tiny models: a three-label task written on the spot, a 2-layer Llama and a
2-layer BERT sentence encoder with tokenizers trained on its words (no download), and a ``RunContext``
for a strategy on them."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slmbench.strategy.base import RunContext, Strategy
from slmbench.strategy.metadata import Family, StrategyMetadata
from slmbench.tasks.examples import Examples, Predictions

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


def toy_rows(per_label: int | Mapping[str, int] = 20) -> list[tuple[str, str]]:
    """(text, label) rows of the toy task: a sentence per row, its label's words mixed with common ones.
    ``per_label``: rows of each label, or of each label by name (``{"neutral": 40, ...}``: an unbalanced task)."""
    import random

    counts = dict.fromkeys(WORDS, per_label) if isinstance(per_label, int) else {label: per_label.get(label, 0) for label in WORDS}
    rng = random.Random(0)
    filler = ("the", "company", "said", "on", "tuesday", "that", "shares", "quarter", "its", "board")
    rows = []
    for i in range(max(counts.values())):
        for label, words in WORDS.items():
            if i >= counts[label]:
                continue
            sentence = [*rng.sample(filler, 4), *rng.sample(words, 2), f"item{i}"]
            rng.shuffle(sentence)
            rows.append((" ".join(sentence).capitalize() + ".", label))
    return rows


def toy_task_files(directory: Path, *, per_label: int | Mapping[str, int] = 20, name: str = "toy-sentiment") -> Path:
    """Write the toy task (``toy.yaml``) and its data (``toy.csv``) into ``directory``; return the YAML path.

    ``per_label`` as ``toy_rows`` takes it (the default, 60 rows, splits 30/15/15); ``name`` is the task's
    name, which names its run folders."""
    labels = {label: f"words such as {', '.join(WORDS[label][:3])}" for label in LABELS}
    task = {
        "name": name,
        "description": "Toy sentiment of short business sentences (slmbench.testing).",
        "instruction": "Is this sentence good, bad or neutral news for the company?",
    }
    return _write_task(directory, "toy", toy_rows(per_label), labels, task)


def _write_task(directory: Path, stem: str, rows: list[tuple[str, str]], labels: dict[str, str], task: dict[str, Any]) -> Path:
    """Write ``rows`` as ``STEM.csv`` and the task (``task``'s name, description and instruction, its source,
    ``labels``: name -> description, and a 50/25/25 split) as ``STEM.yaml`` into ``directory``; return the YAML path."""
    import csv

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{stem}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    task = {
        "name": task["name"],
        "description": task["description"],
        "source": {"file": f"{stem}.csv"},
        "labels": [{"name": label, "description": description} for label, description in labels.items()],
        "instruction": task["instruction"],
        "split": {"test_size": 0.25, "validation_size": 0.25, "seed": 1},
    }
    (directory / f"{stem}.yaml").write_text(json.dumps(task, indent=1), encoding="utf-8")  # JSON is YAML
    return directory / f"{stem}.yaml"


def _corpus() -> list[str]:
    from slmbench.tasks.spec import load_task

    with tempfile.TemporaryDirectory() as folder:
        task = load_task(toy_task_files(Path(folder)))
    prompt_words = [task.instruction, "Answer with exactly one of these labels:", "N/A [MASK]"]
    labels = [f"{label.verbalizer}: {label.description}" for label in task.labels]
    return [text for text, _ in toy_rows()] + prompt_words + labels


def _causal_lm(directory: Path, architecture: str = "llama") -> None:
    """A 2-layer causal LM of ``architecture`` with a byte-level BPE tokenizer (and a chat template)
    trained on the toy task's words."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    tiny_causal_lm(fast, architecture).save_pretrained(directory)
    fast.save_pretrained(directory)


ARCHITECTURES = ("llama", "phi3", "qwen2")
"""The decoder architectures ``tiny_causal_lm`` builds: those of the models users bring (SmolLM2 and
Llama, Phi-3 / Phi-3.5, Qwen2 / Qwen2.5)."""


_ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    # Gemma 3 270M's layout: a sliding-window layer, then a global one. Its initializer is not the
    # others' 0.2: Gemma scales its embeddings by sqrt(hidden size), which at 0.2 makes every answer certain.
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {"head_dim": 16, "query_pre_attn_scalar": 16, "layer_types": ["sliding_attention", "full_attention"], "initializer_range": 0.05},
    ),
}
"""Architecture -> (config class, model class, what its config sets besides the shared sizes)."""


def tiny_causal_lm(tokenizer: Any, architecture: str = "llama", *, attn_implementation: str | None = None, **config: Any) -> Any:
    """A 2-layer causal LM of ``architecture`` (hidden size 64, random but peaked weights, seeded) over
    ``tokenizer``'s vocabulary, fp32, in eval mode: the kit's tiny causal LM, or one for a tokenizer of
    your own. Same sizes whatever the architecture; Phi-3's fused projections, Qwen2's attention
    biases and Gemma 3's sliding-window layer are theirs. ``config``: more config fields (``sliding_window=8``)."""
    import torch
    import transformers

    if architecture not in _ARCHITECTURES:
        raise ValueError(f"tiny_causal_lm: architecture {architecture!r} is not one of {', '.join(_ARCHITECTURES)}")
    config_name, model_name, own = _ARCHITECTURES[architecture]
    torch.manual_seed(0)
    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "initializer_range": 0.2,
        "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "attn_implementation": attn_implementation,  # a PretrainedConfig keyword; None: the default
        **own,
        **config,
    }
    return getattr(transformers, model_name)(getattr(transformers, config_name)(**settings)).eval()


def tiny_llama(tokenizer: Any, *, attn_implementation: str | None = None) -> Any:
    """``tiny_causal_lm(tokenizer, "llama")``: the kit's tiny causal LM."""
    return tiny_causal_lm(tokenizer, "llama", attn_implementation=attn_implementation)


def base_tokenizer() -> Any:
    """A tokenizer like a base model's (Gemma 3's): trained on the toy task's words and the completion
    format's cues, SentencePiece-style (a prefix space on what it encodes alone), ``<bos>`` added in
    front, an ``<eos>``, and no chat template."""
    import string

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from slmbench.lm.prompt_format import ANSWER_CUE, TEXT_CUE

    special = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    newlines = pre_tokenizers.Split(Regex("\n+"), behavior="isolated")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([newlines, pre_tokenizers.Metaspace(prepend_scheme="first")])
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    alphabet = [*string.printable.replace(" ", ""), "▁"]
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=special, show_progress=False, initial_alphabet=alphabet)
    tokenizer.train_from_iterator([*_corpus(), f"{TEXT_CUE} x\n{ANSWER_CUE} y\n\n"], trainer)
    bos = ("<bos>", tokenizer.token_to_id("<bos>"))
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[bos])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")


def tiny_gemma3(tokenizer: Any, sliding_window: int = 512) -> Any:
    """``tiny_causal_lm(tokenizer, "gemma3")``, its sliding-window layer seeing ``sliding_window`` tokens
    (Gemma 3 270M's 512 by default, longer than any toy prompt)."""
    return tiny_causal_lm(tokenizer, "gemma3", sliding_window=sliding_window)


def tiny_base_lm_folder(directory: Path) -> Path:
    """``directory`` holding a tiny base model (``tiny_gemma3`` with ``base_tokenizer``: no chat template),
    a ``--model`` folder needing no download, prompted in the completion format."""
    tokenizer = base_tokenizer()
    tiny_gemma3(tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


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
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    fast = BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=128)
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=len(fast),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    encoder_dir = directory / "encoder"
    bert.save_pretrained(encoder_dir)
    fast.save_pretrained(encoder_dir)
    transformer = Transformer(str(encoder_dir), max_seq_length=128)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(directory))


def tiny_causal_lm_folder(directory: Path, architecture: str = "llama") -> Path:
    """``directory`` holding a tiny causal LM of ``architecture`` (``tiny_causal_lm``) and its tokenizer,
    trained on the fly on the toy task's words: a ``--model`` folder needing no download."""
    _causal_lm(Path(directory), architecture)
    return Path(directory)


@functools.cache
def tiny_models(directory: Path | None = None) -> tuple[Path, Path]:
    """(causal LM folder, embedding model folder) of tiny models, built once per process (in ``directory``
    or a temporary folder). Pass them as ``--model`` / ``--embedding-model``, or to ``make_context``."""
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="slmbench-tiny-models-"))
    _causal_lm(root / "causal-lm")
    _embedder(root / "embedder")
    return root / "causal-lm", root / "embedder"


def make_context(
    strategy: type[Strategy],
    artifact_dir: Path,
    *,
    task: Any = None,
    models: Any = None,
    loaded: Mapping[str, Any] | None = None,
    budget: Any = None,
    seed: int = 0,
    **options: Any,
) -> RunContext:
    """A RunContext for calling a strategy by hand: the toy task and tiny models unless given, the smoke
    profile, CPU, fp32, no progress bars; ``options`` set the strategy's options (validated).

    ``models``: a ``SharedModels``; or ``loaded``: models already in memory by shared-model name
    (``{"causal_lm": (model, tokenizer), "embedder": embedder}``), which the strategy then shares."""
    from slmbench.common.options import build_options
    from slmbench.common.progress import ProgressReporter
    from slmbench.lm.models import SharedModel, SharedModels
    from slmbench.tasks.profiles import get_profile
    from slmbench.tasks.spec import load_task

    if loaded is not None:
        if models is not None:
            raise TypeError("make_context: give models or loaded, not both")
        models = SharedModels()
        models.loaded.update({models.key(SharedModel(kind)): value for kind, value in loaded.items()})
    if models is None:
        causal_lm, embedder = tiny_models()
        models = SharedModels(causal_lm_name=str(causal_lm), embedding_model_name=str(embedder))
    if task is None:
        task = load_task(toy_task_files(artifact_dir.parent / f"{artifact_dir.name}-task"))
    artifact_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        task=task,
        models=models,
        device="cpu",
        dtype="float32",
        seed=seed,
        budget=budget or get_profile("smoke"),
        artifact_dir=artifact_dir,
        progress=ProgressReporter(enabled=False),
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


# --- a task with many labels and few examples of each -------------------------------------------

MANY_LABELS = 20


def many_labels_task_files(directory: Path, per_label: int = 5) -> Path:
    """Write a ``MANY_LABELS``-label task (``many.yaml``, ``many.csv``) into ``directory``; return the YAML path.

    Under the smoke profile its validation split holds one example of some labels and none of others:
    what a strategy that learns on validation (an ensemble's stacker) must survive."""
    import random

    rng = random.Random(0)
    words = [word for group in WORDS.values() for word in group]
    labels = [f"topic {chr(ord('a') + i)}" for i in range(MANY_LABELS)]
    rows = [
        (f"The {words[index % len(words)]} {words[(index * 7) % len(words)]} {rng.choice(words)} item{i}.", label)
        for i in range(per_label)
        for index, label in enumerate(labels)
    ]
    task = {
        "name": "toy-many-labels",
        "description": f"Toy task with {MANY_LABELS} labels and a handful of examples each (slmbench.testing).",
        "instruction": "Which topic is this sentence about?",
    }
    return _write_task(directory, "many", rows, {label: f"texts about {label}" for label in labels}, task)


# --- strategies for a combining strategy to combine -----------------------------------------------


class LabelPrior(Strategy):
    """Every text gets the train split's label frequencies as probabilities (a member for ensemble checks)."""

    metadata = StrategyMetadata(name="label-prior", description="train label frequencies for every text", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        counts = [train.labels.count(label) for label in range(len(self.context.task.labels))]
        self.prior = [count / sum(counts) for count in counts]

    def save(self, directory: Path) -> None:
        (directory / "prior.json").write_text(json.dumps(self.prior), encoding="utf-8")

    def load(self, directory: Path) -> None:
        self.prior = json.loads((directory / "prior.json").read_text(encoding="utf-8"))

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        probabilities = np.tile(self.prior, (len(texts), 1))
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)


class WordOverlap(Strategy):
    """The label of the train text sharing most words with the text, no probabilities (a member for ensemble checks)."""

    metadata = StrategyMetadata(name="word-overlap", description="label of the train text sharing most words", family=Family.RETRIEVAL)

    def fit(self, train: Examples, validation: Examples) -> None:
        self.train = [(set(text.lower().split()), label) for text, label in zip(train.texts, train.labels)]

    def save(self, directory: Path) -> None:
        rows = [(sorted(words), label) for words, label in self.train]
        (directory / "train_words.json").write_text(json.dumps(rows), encoding="utf-8")

    def load(self, directory: Path) -> None:
        rows = json.loads((directory / "train_words.json").read_text(encoding="utf-8"))
        self.train = [(set(words), label) for words, label in rows]

    def predict(self, texts: Sequence[str]) -> Predictions:
        return Predictions(labels=[max(self.train, key=lambda row: len(row[0] & set(text.lower().split())))[1] for text in texts])


TOY_MEMBERS: tuple[type[Strategy], ...] = (LabelPrior, WordOverlap)
"""What the kit's checks give a ``CombiningStrategy`` to combine."""
