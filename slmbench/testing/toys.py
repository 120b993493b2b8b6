"""The kit's toy task and tiny models: a three-label task written on the spot, a 2-layer Llama and a
2-layer BERT sentence encoder with tokenizers trained on its words (no download), and a ``RunContext``
for a strategy on them."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

from slmbench.strategy.base import RunContext, Strategy
from slmbench.tasks.examples import Examples

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
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.2,
        tie_word_embeddings=True,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.bos_token_id,
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
    budget: Any = None,
    seed: int = 0,
    **options: Any,
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
