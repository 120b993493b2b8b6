"""Demonstrations for in-context strategies: the train split's neighbour index and the context budget.

``TrainIndex`` (rag, knn-vote) embeds the train split with the shared embedding model into a FAISS
inner-product index over normalised vectors, so a score is a cosine similarity. It is exact
(``IndexFlatIP``) up to ``EXACT_SEARCH_MAX`` vectors and approximate (HNSW) above. Two guards keep
the test split out of every demonstration: the index only ever holds the texts it was built from
(the strategies build it in ``fit``, from train), and a search never returns a train text equal to
its query after whitespace stripping, even if deduplication missed it.

``plan_demonstrations`` (few-shot, rag) makes sure k demonstrations plus the query fit in the
causal LM's context window, shortening the demonstrations, then dropping some, when they would not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from slmbench.lm.prompts import PromptOptions

if TYPE_CHECKING:
    import numpy as np

    from slmbench.common.progress import ProgressReporter
    from slmbench.tasks.examples import Examples
    from slmbench.tasks.spec import TaskSpec

DEFAULT_K = 4
"""Neighbours per query for rag and knn-vote alike, so knn-vote shows what rag's retrieval alone gives.
Four keeps a 135M model's prompt short, and most of the signal is in the nearest examples."""
DEFAULT_DEMO_TOKENS = 128
"""Tokens per demonstration for few-shot and rag unless set: whole sentences, the opening of a long
article (its headline and lead, which carry the topic). Longer demonstrations slowed few-shot on bbc
by 2.4x per example (a 2,800-token prompt prefix) and did not help a 135M model."""
EXACT_SEARCH_MAX = 10_000
"""Up to this many train vectors the search is exact: brute force over 10,000 x 384 floats takes well
under a millisecond per query. Above it, an HNSW graph keeps queries fast as the train split grows."""
HNSW_LINKS = 32
"""Neighbours per node of the HNSW graph (FAISS's ``M``)."""
HNSW_EF_SEARCH = 128
"""Candidates an HNSW search explores (at least the number of results asked for): recall vs speed."""
ENCODE_BATCH = 64
TOKEN_MARGIN = 4
"""Tokens allowed per text for a re-tokenization inside the chat template differing from the cut."""
MIN_DEMO_TOKENS = 32
"""``plan_demonstrations`` drops demonstrations rather than shorten them below this."""
Encoder = Callable[[Sequence[str], str], "np.ndarray"]
"""``encoder(texts, description)`` -> (len(texts), dim) float32 unit vectors."""


class DemonstrationOptions(PromptOptions):
    """Options of the strategies that show labelled demonstrations in the prompt (few-shot, rag)."""

    demo_tokens: int = Field(
        DEFAULT_DEMO_TOKENS,
        ge=MIN_DEMO_TOKENS,
        le=8192,
        description="tokens each demonstration may keep (the profile's max_input_tokens if lower)",
    )
    max_prompt_tokens: int | None = Field(None, ge=64, description="longest prompt allowed (none: the LM's context window)")
    label_prior: Literal["train", "uniform"] = Field(
        "train",
        description="after calibration, weigh labels by their train-split frequencies (train) or equally (uniform)",
    )


def encode(embedder: Any, texts: Sequence[str], progress: ProgressReporter, description: str) -> np.ndarray:
    """(len(texts), dim) float32 unit vectors from a sentence-transformers-like ``embedder``."""
    import numpy as np

    from slmbench.lm.batch_sizes import inference_batch_size

    size = inference_batch_size(ENCODE_BATCH, str(getattr(embedder, "device", "cpu")))
    batches = [list(texts[i : i + size]) for i in range(0, len(texts), size)]
    vectors = [embedder.encode(batch, normalize_embeddings=True, show_progress_bar=False) for batch in progress.track(batches, description)]
    return np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32)


def build_index(vectors: np.ndarray, exact_max: int = EXACT_SEARCH_MAX) -> Any:
    """A FAISS inner-product index holding ``vectors``: exact up to ``exact_max`` of them, HNSW above."""
    import faiss

    dim = vectors.shape[1]
    index: faiss.Index
    if len(vectors) <= exact_max:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    return index


@dataclass
class Neighbours:
    """Per query, train positions and cosine similarities of its nearest train texts, most similar first."""

    indices: list[list[int]]
    similarities: list[list[float]]
    self_matches_excluded: int
    """Retrieved train texts dropped because they equal their query."""


INDEX_FILE = "train.faiss"
INDEX_ENTRIES_FILE = "train_index.json"


class TrainIndex:
    """The train split's texts, embedded and indexed for nearest-neighbour search.

    Saved as ``train.faiss`` (the index) and ``train_index.json`` (the labels, and a hash of each
    text to tell a query equal to a train text: the texts themselves are not needed to search)."""

    def __init__(self, encoder: Encoder, train: Examples, exact_max: int = EXACT_SEARCH_MAX) -> None:
        """``encoder(texts, description)``: unit vectors, e.g. ``SharedModels.encode`` (or ``encode`` bound to an embedder)."""
        index = build_index(encoder(train.texts, "Encoding train texts"), exact_max)
        self._attach(encoder, index, train.labels, [_text_hash(text) for text in train.texts])

    @classmethod
    def load(cls, encoder: Encoder, directory: Path) -> TrainIndex:
        """The index ``save`` wrote to ``directory``, searched with ``encoder`` (the same embedding model)."""
        import faiss

        saved = json.loads((directory / INDEX_ENTRIES_FILE).read_text(encoding="utf-8"))
        loaded = cls.__new__(cls)
        loaded._attach(encoder, faiss.read_index(str(directory / INDEX_FILE)), saved["labels"], saved["text_sha256"])
        return loaded

    def _attach(self, encoder: Encoder, index: Any, labels: Sequence[int], text_hashes: Sequence[str]) -> None:
        self.encoder = encoder
        self.index = index
        self.labels = list(labels)
        self.text_hashes = list(text_hashes)
        self.positions_by_text: dict[str, set[int]] = {}
        for position, text_hash in enumerate(self.text_hashes):
            self.positions_by_text.setdefault(text_hash, set()).add(position)

    def save(self, directory: Path) -> None:
        """Write ``train.faiss`` and ``train_index.json`` into the folder ``directory``."""
        import faiss

        faiss.write_index(self.index, str(directory / INDEX_FILE))
        saved = {"labels": self.labels, "text_sha256": self.text_hashes}
        (directory / INDEX_ENTRIES_FILE).write_text(json.dumps(saved), encoding="utf-8")

    @property
    def kind(self) -> str:
        """The FAISS index class: ``IndexFlatIP`` (exact) or ``IndexHNSWFlat`` (approximate)."""
        return type(self.index).__name__

    def describe(self) -> dict[str, Any]:
        description: dict[str, Any] = {"index": self.kind, "vectors": self.index.ntotal, "exact_max": EXACT_SEARCH_MAX}
        if self.kind == "IndexHNSWFlat":
            description.update(hnsw_links=HNSW_LINKS, hnsw_ef_search=HNSW_EF_SEARCH)
        return description

    def search(self, texts: Sequence[str], k: int) -> Neighbours:
        """The ``k`` train texts nearest each of ``texts``, never one equal to it (after stripping)."""
        excluded = [self.positions_by_text.get(_text_hash(text), set()) for text in texts]
        depth = min(k + max(map(len, excluded), default=0), self.index.ntotal)
        if self.kind == "IndexHNSWFlat":
            self.index.hnsw.efSearch = max(HNSW_EF_SEARCH, depth)
        queries = self.encoder(texts, "Encoding queries")
        similarities, indices = self.index.search(queries, depth)
        neighbours = Neighbours([], [], 0)
        for row_similarities, row_indices, banned in zip(similarities, indices, excluded):
            kept = [(int(i), float(s)) for i, s in zip(row_indices, row_similarities) if i >= 0 and i not in banned]
            neighbours.self_matches_excluded += sum(int(i) in banned for i in row_indices)
            neighbours.indices.append([i for i, _ in kept[:k]])
            neighbours.similarities.append([s for _, s in kept[:k]])
        return neighbours


def _text_hash(text: str) -> str:
    """What tells a query equal to a train text: the SHA-256 of the text without surrounding whitespace."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DemonstrationPlan:
    """How many demonstrations a prompt holds and how long each may be, so that the prompt fits."""

    demonstrations: int
    tokens_per_demonstration: int
    max_prompt_tokens: int
    """Upper bound on a prompt's length, answer included, with this plan."""
    context_window: int
    reduced: str | None
    """What was cut to fit the context window, or None."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "demonstrations": self.demonstrations,
            "tokens_per_demonstration": self.tokens_per_demonstration,
            "max_prompt_tokens": self.max_prompt_tokens,
            "context_window": self.context_window,
            "reduced": self.reduced,
        }


def plan_demonstrations(
    task: TaskSpec,
    tokenizer: Any,
    *,
    demonstrations: int,
    demo_tokens: int,
    max_input_tokens: int,
    context_window: int,
    prompt_format: str = "auto",
) -> DemonstrationPlan:
    """Fit ``demonstrations`` of ``demo_tokens`` each, plus a query of ``max_input_tokens``, in the window.

    The prompt's fixed parts (system prompt, chat or text markup, longest answer) are measured with the
    tokenizer, in ``prompt_format``. If the prompt could overflow, the demonstrations are shortened first,
    down to ``MIN_DEMO_TOKENS``, then the last ones are dropped; ``reduced`` says which happened.
    """
    from slmbench.lm.prompt_format import PromptFormat
    from slmbench.lm.prompts import build_messages

    rendering = PromptFormat.of(tokenizer, prompt_format)
    answers = [rendering.answer(label.verbalizer) for label in task.labels]
    longest = max(range(len(answers)), key=lambda label: len(answers[label]))
    empty, one_demo = (
        build_messages(task, "", tokenizer=tokenizer, max_input_tokens=0, demonstrations=demos) for demos in ([], [("", longest)])
    )
    base, with_one = map(len, rendering.prompts([empty, one_demo]))
    fixed = base + len(answers[longest]) + max_input_tokens + TOKEN_MARGIN
    markup = with_one - base + TOKEN_MARGIN

    def length(count: int, tokens: int) -> int:
        return fixed + count * (markup + tokens)

    count, tokens, reduced = demonstrations, min(demo_tokens, max_input_tokens), None
    if count and length(count, tokens) > context_window:
        tokens = max((context_window - fixed) // count - markup, MIN_DEMO_TOKENS)
        reduced = f"demonstrations cut to {tokens} tokens (from {min(demo_tokens, max_input_tokens)})"
        if length(count, tokens) > context_window:
            count = max((context_window - fixed) // (markup + tokens), 0)
            reduced = f"demonstrations cut to {tokens} tokens and to {count} (from {demonstrations})"
    if length(count, tokens) > context_window or (demonstrations and not count):
        raise ValueError(
            f"a {context_window}-token context cannot hold a {max_input_tokens}-token query and one demonstration: "
            "lower the profile's max_input_tokens or raise max_prompt_tokens"
        )
    return DemonstrationPlan(count, tokens, length(count, tokens), context_window, reduced)
