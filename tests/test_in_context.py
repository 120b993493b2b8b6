"""few-shot, rag and knn-vote: demonstration choice and order, voting, and each end to end on tiny models."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_retrieval import BagOfWordsEmbedder

import slmbench.lm.scoring
from slmbench.lm.models import SharedModels, param_count
from slmbench.strategy.base import Family, RunContext
from slmbench.tasks.examples import Examples
from slmbench.testing import make_context as kit_context
from slmbench_plugins import few_shot, knn_vote, rag
from slmbench_plugins.few_shot import FewShot, choose_demonstrations
from slmbench_plugins.knn_vote import KnnVote, vote
from slmbench_plugins.rag import Rag

TRAIN = Examples(
    texts=[
        "Operating profit rose sharply in the quarter.",
        "The company cut 200 jobs after heavy losses.",
        "The annual meeting is on Tuesday in Helsinki.",
        "Net sales rose 12 percent to EUR 40 million.",
        "Losses widened and the outlook was cut.",
        "The firm appointed a new chief financial officer.",
        "Profit rose and the dividend rose too.",
        "Shares fell after the profit warning.",
        "The report will be published in March.",
    ],
    labels=[2, 0, 1, 2, 0, 1, 2, 0, 1],
)
# The first test text slipped into train by mistake (with different whitespace): it must never be its own demonstration.
TEST = [
    "Net sales rose 12 percent to EUR 40 million.",
    "Shares fell sharply after losses.",
    "The meeting is on Tuesday.",
]
LEAKY_TRAIN = Examples(TRAIN.texts + [" " + TEST[0] + "\n"], TRAIN.labels + [2])


def make_context(strategy, toy_task, tiny_causal_lm, tmp_path, **options) -> RunContext:
    models = SharedModels(_loaded={"causal_lm": tiny_causal_lm, "embedder": BagOfWordsEmbedder()})
    return kit_context(strategy, tmp_path, task=toy_task, models=models, **options)


@pytest.fixture
def captured_conversations(monkeypatch):
    """The conversations the strategies hand to the scoring engine."""
    captured = []
    score_choices = slmbench.lm.scoring.score_choices

    def capture(model, tokenizer, conversations, *args, **kwargs):
        captured.extend(conversations)
        return score_choices(model, tokenizer, conversations, *args, **kwargs)

    monkeypatch.setattr(slmbench.lm.scoring, "score_choices", capture)
    return captured


def demonstrations_of(conversation: list[dict]) -> list[tuple[str, str]]:
    """(user text, assistant answer) pairs between the system prompt and the final query."""
    turns = conversation[1:-1]
    return [(user["content"], assistant["content"]) for user, assistant in zip(turns[::2], turns[1::2])]


def test_each_plugin_registers_its_strategy():
    for module, strategy, family, uses in [
        (few_shot, FewShot, Family.PROMPTING, ("causal_lm",)),
        (rag, Rag, Family.RETRIEVAL, ("causal_lm", "embedder")),
        (knn_vote, KnnVote, Family.RETRIEVAL, ("embedder",)),
    ]:
        registered = []
        module.register_strategies(registered.append)
        assert registered == [strategy] and strategy.family is family and strategy.uses_models == uses


def test_few_shot_choice_is_class_balanced_interleaved_and_deterministic_for_a_seed():
    labels = [0] * 10 + [1] * 10 + [2] * 1
    chosen = choose_demonstrations(labels, 3, shots_per_class=2, seed=7)
    assert Counter(labels[i] for i in chosen) == {0: 2, 1: 2, 2: 1}  # all of a rarer class
    assert len(set(chosen)) == len(chosen)
    assert sorted(labels[i] for i in chosen[:3]) == [0, 1, 2]  # labels interleaved, one of each per round
    assert chosen == choose_demonstrations(labels, 3, shots_per_class=2, seed=7)
    assert any(choose_demonstrations(labels, 3, shots_per_class=2, seed=s) != chosen for s in range(8, 12))


def test_knn_vote_weights_neighbours_by_similarity():
    probabilities = vote([[0, 1, 1], [2, 0], [1, 2]], [[0.9, 0.3, 0.4], [0.5, -0.2], [-0.1, -0.3]], n_labels=3)
    np.testing.assert_allclose(probabilities[0], [0.9 / 1.6, 0.7 / 1.6, 0])  # two weak votes lose to a strong one
    np.testing.assert_allclose(probabilities[1], [0, 0, 1])  # a negative similarity is no vote
    np.testing.assert_allclose(probabilities[2], [0, 0.5, 0.5])  # no positive similarity: one vote each


def test_few_shot_end_to_end(toy_task, tiny_causal_lm, tmp_path, captured_conversations):
    strategy = FewShot(make_context(FewShot, toy_task, tiny_causal_lm, tmp_path, shots_per_class=1, calibration="none"))
    strategy.fit(TRAIN, Examples([], []))
    predictions = strategy.predict(TEST)

    assert len(predictions.labels) == 3 and predictions.probabilities.shape == (3, 3)
    details = strategy.details
    chosen = [d["train_index"] for d in details["demonstrations"]]
    assert chosen == choose_demonstrations(TRAIN.labels, 3, 1, seed=0) and strategy.labelled_examples == 3
    expected = [(TRAIN.texts[i], toy_task.labels[TRAIN.labels[i]].verbalizer) for i in chosen]
    assert len(captured_conversations) == len(TEST)
    assert all(demonstrations_of(c) == expected for c in captured_conversations)  # the same for every text
    assert 30 < details["shared_prefix_tokens"] < strategy.prompt_tokens_per_example
    assert strategy.parameter_counts() == (0, param_count(tiny_causal_lm[0]))


def test_rag_end_to_end_nearest_last_and_no_leak(toy_task, tiny_causal_lm, tmp_path, captured_conversations):
    strategy = Rag(make_context(Rag, toy_task, tiny_causal_lm, tmp_path, k=3, calibration="none"))
    strategy.fit(LEAKY_TRAIN, Examples([], []))
    predictions = strategy.predict(TEST)

    assert len(predictions.labels) == 3 and predictions.probabilities.shape == (3, 3)
    details = strategy.details
    assert details["index"] == "IndexFlatIP" and details["k"] == 3 and strategy.labelled_examples is None
    assert details["self_matches_excluded"] == 2
    for query, conversation, nearest in zip(TEST, captured_conversations, details["neighbours"]):
        assert conversation[-1]["content"] == query
        demonstrations = demonstrations_of(conversation)
        assert [text for text, _ in demonstrations] == [LEAKY_TRAIN.texts[i] for i in reversed(nearest)]  # nearest last
        assert all(i < len(LEAKY_TRAIN) and LEAKY_TRAIN.texts[i].strip() != query for i in nearest)
    assert (tmp_path / "train.faiss").exists()
    embedder_params = param_count(BagOfWordsEmbedder())
    assert strategy.parameter_counts() == (0, param_count(tiny_causal_lm[0]) + embedder_params)


def test_rag_truncates_demonstrations_to_the_plan(toy_task, tiny_causal_lm, tmp_path, captured_conversations):
    _, tokenizer = tiny_causal_lm
    long_train = Examples([text + " And more words follow here." * 20 for text in TRAIN.texts], TRAIN.labels)
    strategy = Rag(make_context(Rag, toy_task, tiny_causal_lm, tmp_path, k=2, demo_tokens=32, calibration="none"))
    strategy.fit(long_train, Examples([], []))
    strategy.predict(TEST)
    assert strategy.plan.tokens_per_demonstration == 32
    for conversation in captured_conversations:
        for text, _ in demonstrations_of(conversation):
            assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 32


def test_knn_vote_end_to_end(toy_task, tiny_causal_lm, tmp_path):
    strategy = KnnVote(make_context(KnnVote, toy_task, tiny_causal_lm, tmp_path, k=3))
    strategy.fit(LEAKY_TRAIN, Examples([], []))
    predictions = strategy.predict(TEST)

    details = strategy.details
    assert strategy.options.k == 3 and strategy.labelled_examples is None
    assert details["self_matches_excluded"] == 2
    expected = vote(
        [[LEAKY_TRAIN.labels[i] for i in row] for row in details["neighbours"]],
        strategy.index.search(TEST, 3).similarities,
        3,
    )
    np.testing.assert_allclose(predictions.probabilities, expected)
    assert predictions.labels == expected.argmax(axis=1).tolist()
    assert strategy.parameter_counts() == (0, param_count(BagOfWordsEmbedder()))


@pytest.mark.parametrize("method", ["batch", "content-free"])
def test_calibration_divides_out_the_answer_bias_and_restores_the_train_prior(
    method, toy_task, tiny_causal_lm, tmp_path, captured_conversations
):
    """The bias is the mean answer distribution over unlabelled train texts (batch) or content-free inputs,
    scored with the strategy's own demonstrations; the train split's label frequencies replace it."""
    from slmbench.lm.prompts import CONTENT_FREE_TEXTS, label_frequencies

    raw = FewShot(make_context(FewShot, toy_task, tiny_causal_lm, tmp_path / "raw", calibration="none"))
    raw.fit(TRAIN, Examples([], []))
    uncalibrated = raw.predict(TRAIN.texts).probabilities
    captured_conversations.clear()
    strategy = FewShot(make_context(FewShot, toy_task, tiny_causal_lm, tmp_path / "cal", calibration=method, calibration_texts=64))
    strategy.fit(TRAIN, Examples([], []))
    scored = [conversation[-1]["content"] for conversation in captured_conversations]
    assert sorted(scored) == sorted(CONTENT_FREE_TEXTS if method == "content-free" else TRAIN.texts)
    assert all(demonstrations_of(c) == demonstrations_of(captured_conversations[0]) for c in captured_conversations)
    prior = np.asarray(label_frequencies(TRAIN.labels, 3))
    assert strategy.calibration.prior == pytest.approx(tuple(prior)) and strategy.labelled_examples == len(TRAIN)
    bias = np.asarray(strategy.calibration.bias)
    if method == "batch":
        np.testing.assert_allclose(bias, uncalibrated.mean(axis=0), rtol=1e-6)
    expected = uncalibrated / bias * prior
    np.testing.assert_allclose(strategy.predict(TRAIN.texts).probabilities, expected / expected.sum(axis=1, keepdims=True), rtol=1e-6)
    assert strategy.details["calibration"]["method"] == method
