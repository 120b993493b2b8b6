"""The train-split neighbour index (leakage guard, ordering, exact vs HNSW) and the demonstration budget."""

from __future__ import annotations

import re
import zlib

import faiss
import numpy as np
import pytest
import torch

from slmbench.common.progress import ProgressReporter
from slmbench.lm.prompts import build_messages, truncate_text
from slmbench.lm.retrieval import TrainIndex, build_index, encode, plan_demonstrations
from slmbench.lm.scoring import answer_tokens, tokenize_prompts
from slmbench.tasks.examples import Examples

TRAIN = Examples(
    texts=[
        "profits rose sharply this quarter",
        "the company cut jobs after heavy losses",
        "profits rose again as sales rose",
        "the board meets on tuesday",
        "losses widened and the company cut its outlook",
        "sales rose in every region",
    ],
    labels=[2, 0, 2, 1, 0, 2],
)


class BagOfWordsEmbedder:
    """A deterministic stand-in for the sentence-transformers embedder: hashed word counts, unit length."""

    dim = 64

    def encode(self, texts, normalize_embeddings=True, show_progress_bar=False):
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in zip(vectors, texts):
            for word in re.findall(r"\w+", text.lower()):
                row[zlib.crc32(word.encode()) % self.dim] += 1
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1) if normalize_embeddings else vectors

    def parameters(self):
        return [torch.zeros(self.dim)]


def make_index(train: Examples = TRAIN, **kwargs) -> TrainIndex:
    embedder, progress = BagOfWordsEmbedder(), ProgressReporter(enabled=False)
    return TrainIndex(lambda texts, description: encode(embedder, texts, progress, description), train, **kwargs)


def test_encode_batches_into_unit_float32_vectors():
    texts = [f"text number {i}" for i in range(150)]  # three batches
    vectors = encode(BagOfWordsEmbedder(), texts, ProgressReporter(enabled=False), "encoding")
    assert vectors.shape == (150, BagOfWordsEmbedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-6)


def test_search_returns_train_positions_most_similar_first():
    neighbours = make_index().search(["profits rose", "the company cut jobs"], k=3)
    assert neighbours.indices[0][0] == 0 and neighbours.indices[1][0] == 1
    for similarities in neighbours.similarities:
        assert similarities == sorted(similarities, reverse=True)
    assert all(0 <= i < len(TRAIN) for row in neighbours.indices for i in row)


def test_a_query_never_retrieves_its_own_text_even_if_duplicated_in_train():
    test_texts = ["sales rose in every region", "the board meets on tuesday"]
    # Deduplication missed both test texts: one is in train twice, with different whitespace.
    train = Examples(TRAIN.texts + ["  sales rose in every region\n"], TRAIN.labels + [2])
    neighbours = make_index(train).search(test_texts, k=len(train))
    own = [{5, 6}, {3}]
    for query, row, banned in zip(test_texts, neighbours.indices, own):
        assert not banned & set(row)
        assert len(row) == len(train) - len(banned)  # searched deep enough to still return every other text
        assert all(train.texts[i].strip() != query for i in row)
    assert neighbours.self_matches_excluded == 3


def test_the_index_holds_only_the_texts_it_was_built_from():
    index = make_index()
    assert index.index.ntotal == len(TRAIN)
    neighbours = index.search(["a test text about profits and losses"] * 2, k=10)
    assert all(set(row) <= set(range(len(TRAIN))) for row in neighbours.indices)


def test_exact_index_up_to_the_threshold_hnsw_above():
    vectors = BagOfWordsEmbedder().encode([f"document {i} about topic {i % 7}" for i in range(40)])
    assert type(build_index(vectors[:20], exact_max=20)).__name__ == "IndexFlatIP"
    hnsw = build_index(vectors[:21], exact_max=20)
    assert type(hnsw).__name__ == "IndexHNSWFlat" and hnsw.metric_type == faiss.METRIC_INNER_PRODUCT
    assert hnsw.ntotal == 21


def test_hnsw_index_search_matches_exact_on_a_small_set():
    texts = [f"document {i} about topic {i % 7} and item {i % 5}" for i in range(60)]
    train = Examples(texts, [i % 3 for i in range(60)])
    queries = ["topic 3 and item 2", "document 11"]
    exact, approximate = make_index(train), make_index(train, exact_max=10)
    assert (exact.kind, approximate.kind) == ("IndexFlatIP", "IndexHNSWFlat")
    assert approximate.describe()["index"] == "IndexHNSWFlat" and "hnsw_links" in approximate.describe()
    np.testing.assert_allclose(approximate.search(queries, 5).similarities, exact.search(queries, 5).similarities, rtol=1e-5)


def test_save_writes_a_readable_faiss_index_that_load_searches_alike_without_the_texts(tmp_path):
    index = make_index()
    index.save(tmp_path)
    assert faiss.read_index(str(tmp_path / "train.faiss")).ntotal == len(TRAIN)
    assert not any(text in (tmp_path / "train_index.json").read_text() for text in TRAIN.texts)

    loaded = TrainIndex.load(index.encoder, tmp_path)
    queries = [TRAIN.texts[0], "a text of its own"]  # the first equals a train text: never its own neighbour
    assert loaded.search(queries, 3) == index.search(queries, 3) and loaded.labels == index.labels


def worst_case_prompt_tokens(toy_task, tokenizer, plan, max_input_tokens) -> int:
    """Length of the longest prompt the plan allows: every text cut at its limit, longest answer."""
    long_text = "Revenue for the period was up, according to the statement. " * 200
    demo = truncate_text(tokenizer, long_text, plan.tokens_per_demonstration)
    messages = build_messages(
        toy_task,
        long_text,
        tokenizer=tokenizer,
        max_input_tokens=max_input_tokens,
        demonstrations=[(demo, 0)] * plan.demonstrations,
    )
    answer = max(len(answer_tokens(tokenizer, label.verbalizer)) for label in toy_task.labels)
    return len(tokenize_prompts(tokenizer, [messages])[0]) + answer


def test_plan_keeps_the_request_when_it_fits(toy_task, smollm2_tokenizer):
    plan = plan_demonstrations(toy_task, smollm2_tokenizer, demonstrations=4, demo_tokens=100, max_input_tokens=64, context_window=8192)
    assert (plan.demonstrations, plan.tokens_per_demonstration, plan.reduced) == (4, 64, None)  # capped by the query's
    assert worst_case_prompt_tokens(toy_task, smollm2_tokenizer, plan, 64) <= plan.max_prompt_tokens


@pytest.mark.parametrize("window", [1000, 600])
def test_plan_shortens_then_drops_demonstrations_to_fit(toy_task, smollm2_tokenizer, window):
    plan = plan_demonstrations(toy_task, smollm2_tokenizer, demonstrations=8, demo_tokens=256, max_input_tokens=256, context_window=window)
    assert plan.reduced and plan.max_prompt_tokens <= window
    assert worst_case_prompt_tokens(toy_task, smollm2_tokenizer, plan, 256) <= window
    if window == 1000:
        assert plan.demonstrations == 8 and 32 <= plan.tokens_per_demonstration < 256
    else:
        assert 1 <= plan.demonstrations < 8 and plan.tokens_per_demonstration == 32


def test_plan_refuses_a_window_too_small_for_one_demonstration(toy_task, smollm2_tokenizer):
    with pytest.raises(ValueError, match="cannot hold"):
        plan_demonstrations(toy_task, smollm2_tokenizer, demonstrations=2, demo_tokens=64, max_input_tokens=256, context_window=300)
