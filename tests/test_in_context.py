"""few-shot, rag and knn-vote: demonstration choice and order, voting, and each end to end on tiny models."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from run_contexts import run_context
from test_retrieval import BagOfWordsEmbedder

import slmbench.scoring
from slmbench.models import SharedModels, param_count
from slmbench.strategy import Examples, Family, RunContext
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


def make_context(toy_task, tiny_causal_lm, tmp_path, **params) -> RunContext:
    models = SharedModels(_loaded={"causal_lm": tiny_causal_lm, "embedder": BagOfWordsEmbedder()})
    return run_context(toy_task, models, tmp_path, **params)


@pytest.fixture
def captured_conversations(monkeypatch):
    """The conversations the strategies hand to the scoring engine."""
    captured = []
    score_choices = slmbench.scoring.score_choices

    def capture(model, tokenizer, conversations, *args, **kwargs):
        captured.extend(conversations)
        return score_choices(model, tokenizer, conversations, *args, **kwargs)

    monkeypatch.setattr(slmbench.scoring, "score_choices", capture)
    return captured


def demonstrations_of(conversation: list[dict]) -> list[tuple[str, str]]:
    """(user text, assistant answer) pairs between the system prompt and the final query."""
    turns = conversation[1:-1]
    return [(user["content"], assistant["content"]) for user, assistant in zip(turns[::2], turns[1::2])]


def test_importing_the_plugins_imports_nothing_heavy():
    code = (
        "import sys, slmbench_plugins.few_shot, slmbench_plugins.rag, slmbench_plugins.knn_vote\n"
        "assert not {'torch', 'faiss', 'numpy'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


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
    strategy = FewShot(make_context(toy_task, tiny_causal_lm, tmp_path, shots_per_class=1))
    strategy.fit(TRAIN, Examples([], []))
    predictions = strategy.predict(TEST)

    assert len(predictions.labels) == 3 and predictions.probabilities.shape == (3, 3)
    details = strategy.details
    chosen = [d["train_index"] for d in details["demonstrations"]]
    assert chosen == choose_demonstrations(TRAIN.labels, 3, 1, seed=0) and details["labelled_examples"] == 3
    expected = [(TRAIN.texts[i], toy_task.labels[TRAIN.labels[i]].verbalizer) for i in chosen]
    assert all(demonstrations_of(c) == expected for c in captured_conversations)  # the same for every text
    assert 30 < details["shared_prefix_tokens"] < details["prompt_tokens_per_example"]
    assert strategy.parameter_counts() == (0, param_count(tiny_causal_lm[0]))


def test_rag_end_to_end_nearest_last_and_no_leak(toy_task, tiny_causal_lm, tmp_path, captured_conversations):
    strategy = Rag(make_context(toy_task, tiny_causal_lm, tmp_path, k=3))
    strategy.fit(LEAKY_TRAIN, Examples([], []))
    predictions = strategy.predict(TEST)

    assert len(predictions.labels) == 3 and predictions.probabilities.shape == (3, 3)
    details = strategy.details
    assert details["index"] == "IndexFlatIP" and details["k"] == 3 and details["labelled_examples"] == len(LEAKY_TRAIN)
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
    strategy = Rag(make_context(toy_task, tiny_causal_lm, tmp_path, k=2, demo_tokens=12))
    strategy.fit(long_train, Examples([], []))
    strategy.predict(TEST)
    assert strategy.plan.tokens_per_demonstration == 12
    for conversation in captured_conversations:
        for text, _ in demonstrations_of(conversation):
            assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 12


def test_knn_vote_end_to_end(toy_task, tiny_causal_lm, tmp_path):
    strategy = KnnVote(make_context(toy_task, tiny_causal_lm, tmp_path, k=3))
    strategy.fit(LEAKY_TRAIN, Examples([], []))
    predictions = strategy.predict(TEST)

    details = strategy.details
    assert details["k"] == 3 and details["labelled_examples"] == len(LEAKY_TRAIN)
    assert details["self_matches_excluded"] == 2
    expected = vote(
        [[LEAKY_TRAIN.labels[i] for i in row] for row in details["neighbours"]],
        strategy.index.search(TEST, 3).similarities,
        3,
    )
    np.testing.assert_allclose(predictions.probabilities, expected)
    assert predictions.labels == expected.argmax(axis=1).tolist()
    assert strategy.parameter_counts() == (0, param_count(BagOfWordsEmbedder()))
