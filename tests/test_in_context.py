"""few-shot, rag and knn-vote: demonstration choice and order, voting, and each end to end on tiny models."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_retrieval import BagOfWordsEmbedder

import slmbench.lm.scoring
from slmbench.lm.models import param_count
from slmbench.tasks.examples import Examples
from slmbench.testing import make_context
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


@pytest.fixture
def models(tiny_causal_lm):
    """The shared models the strategies get (``make_context(..., loaded=models)``): the tiny Llama and a bag-of-words embedder."""
    return {"causal_lm": tiny_causal_lm, "embedder": BagOfWordsEmbedder()}


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


def test_few_shot_end_to_end(toy_task, tiny_causal_lm, models, tmp_path, captured_conversations):
    strategy = FewShot(make_context(FewShot, tmp_path, task=toy_task, loaded=models, shots_per_class=1, calibration="none"))
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


def test_rag_end_to_end_nearest_last_and_no_leak(toy_task, tiny_causal_lm, models, tmp_path, captured_conversations):
    strategy = Rag(make_context(Rag, tmp_path, task=toy_task, loaded=models, k=3, calibration="none"))
    strategy.fit(LEAKY_TRAIN, Examples([], []))
    strategy.save(tmp_path)
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


def test_rag_truncates_demonstrations_to_the_plan(toy_task, tiny_causal_lm, models, tmp_path, captured_conversations):
    _, tokenizer = tiny_causal_lm
    long_train = Examples([text + " And more words follow here." * 20 for text in TRAIN.texts], TRAIN.labels)
    strategy = Rag(make_context(Rag, tmp_path, task=toy_task, loaded=models, k=2, demo_tokens=32, calibration="none"))
    strategy.fit(long_train, Examples([], []))
    strategy.predict(TEST)
    assert strategy.plan.tokens_per_demonstration == 32
    for conversation in captured_conversations:
        for text, _ in demonstrations_of(conversation):
            assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 32


def test_knn_vote_end_to_end(toy_task, models, tmp_path):
    """Texts whose nearest train texts and cosine similarities are known by construction: every word below
    falls in its own bucket of the bag-of-words embedder, so a text's similarity to another is the
    cosine of their word counts (1 for the same words in another order, 0 for no shared word)."""
    train = Examples(
        ["profit rose", "rose profit", "profit rose again", "meeting held", "held meeting", "sales fell", "cut jobs"],
        [2, 2, 0, 1, 1, 0, 0],
    )
    words = {word for text in train.texts for word in text.split()}
    assert len({int(BagOfWordsEmbedder().encode([word]).argmax()) for word in words}) == len(words)  # the premise
    strategy = KnnVote(make_context(KnnVote, tmp_path, task=toy_task, loaded=models, k=3))
    strategy.fit(train, Examples([], []))
    predictions = strategy.predict(["Profit rose.", "Rose again, again.", " held meeting\n", "profit rose again"])

    near = 2 / 6**0.5  # "profit rose" and "profit rose again"
    again, rose = 3 / 15**0.5, 1 / 10**0.5  # {rose, again x2} and "profit rose again"; and "profit rose"
    expected = [
        [near / (2 + near), 0, 2 / (2 + near)],  # two exact matches (positive) and a close negative
        [again / (again + 2 * rose), 0, 2 * rose / (again + 2 * rose)],  # one close negative outweighs two far positives
        [0, 1, 0],  # its own text is never its neighbour: the reordered one, then two that share no word
        [0, 0, 1],  # likewise: the two positives it contains, then none sharing a word
    ]
    np.testing.assert_allclose(predictions.probabilities, expected, rtol=1e-5, atol=1e-7)
    assert predictions.labels == [2, 0, 1, 2]
    assert strategy.details["self_matches_excluded"] == 2 and strategy.labelled_examples is None
    assert strategy.parameter_counts() == (0, BagOfWordsEmbedder.dim)  # the stand-in embedder's one 64-vector


@pytest.mark.parametrize("method", ["batch", "content-free"])
def test_calibration_divides_out_the_answer_bias_and_restores_the_train_prior(method, toy_task, models, tmp_path, captured_conversations):
    """The bias is the mean answer distribution over unlabelled train texts (batch) or content-free inputs,
    scored with the strategy's own demonstrations; the train split's label frequencies replace it."""
    from slmbench.lm.prompts import CONTENT_FREE_TEXTS, label_frequencies

    raw = FewShot(make_context(FewShot, tmp_path / "raw", task=toy_task, loaded=models, calibration="none"))
    raw.fit(TRAIN, Examples([], []))
    uncalibrated = raw.predict(TRAIN.texts).probabilities
    captured_conversations.clear()
    strategy = FewShot(make_context(FewShot, tmp_path / "cal", task=toy_task, loaded=models, calibration=method, calibration_texts=64))
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
    assert strategy.calibration.method == method and "calibration" not in strategy.details
    assert strategy.calibration.model_dump(mode="json")["bias"] == [round(float(b), 4) for b in bias]  # written rounded
