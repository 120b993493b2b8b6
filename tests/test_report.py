"""The decision report, rendered from JSON files alone (no models, no data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from slmbench import records
from slmbench.engine.metrics import classification_metrics
from slmbench.report import stats
from slmbench.report.compare import render_comparison
from slmbench.report.learning_curves import leader_changes
from slmbench.report.recommend import Constraints, recommend
from slmbench.report.render import render_report
from slmbench.report.summary import load_summary

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
LABELS = ["no", "yes"]
PROFILE = records.Budget(
    name="toy",
    max_train_examples=None,
    max_validation_examples=None,
    max_test_examples=None,
    max_input_tokens=64,
    max_train_steps=None,
    batch_size=8,
)
V1_PROFILE = {  # slmbench 0.1's profile had these caps only
    "name": "quick",
    "max_train_examples": 1000,
    "max_validation_examples": 200,
    "max_test_examples": 200,
    "max_input_tokens": 256,
    "max_train_steps": 60,
    "batch_size": 8,
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A copy of the fixture run, so rendering never writes into the repository."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "run_small"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's report, rendered once for the tests that only read it."""
    return render_report(Path(shutil.copytree(FIXTURE, tmp_path_factory.mktemp("rendered") / "run_small")))


def _section(markdown: str, title: str) -> str:
    """The text of one ``## title`` section."""
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].strip()


def _table_rows(section: str) -> list[list[str]]:
    """Cells of the first markdown table of a section, header and separator excluded."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    table = lines[: next((i for i, line in enumerate(lines[2:], 2) if not line), len(lines))]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table[2:]]


# --- Report v1 on the fixture ---------------------------------------------------------------------


def test_report_has_every_section_in_order(rendered: Path) -> None:
    text = rendered.read_text()
    assert text.startswith("# Decision report: sentiment (2025-11-23)\n")
    assert "```sh\nslmbench run --task sentiment --profile quick" in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Recommendation",
        "## Leaderboard",
        "## What this test set can see",
        "## Trade-offs",
        "## Cost per prediction",
        "## Calibration",
        "## Per-class results",
        "## Failures",
        "## Data and protocol",
        "## Published reference points",
        "## Environment",
    ]


def test_leaderboard_is_sorted_by_accuracy_with_costs_in_human_units(rendered: Path) -> None:
    rows = _table_rows(_section(rendered.read_text(), "Leaderboard"))
    assert [row[1] for row in rows] == ["lora", "embedding-classifier", "zero-shot"]
    lora, embedding, zero_shot = rows
    assert lora[:3] == ["1", "lora", "parameter-efficient"]
    assert lora[3].startswith("0.850 (") and lora[4].startswith("0.845 (")
    assert lora[5] == "—"  # no McNemar test of #1 against itself
    assert embedding[5] == "0.688"  # 4 vs 2 discordant examples
    assert lora[6:] == ["413", "9.81", "245", "—", "4.08", "2,871", "1.6M", "136.1M", "6.3 MiB", "—"]  # no single requests then
    assert embedding[12:15] == ["1.2K", "22.7M", "4.9 KiB"]
    assert zero_shot[-1] == "61.3"  # prompt tokens per example, only zero-shot records it


def test_failure_is_one_line_pointing_at_the_trial_file(rendered: Path) -> None:
    failures = _section(rendered.read_text(), "Failures")
    line = next(line for line in failures.splitlines() if line.startswith("- "))
    assert line.startswith("- `full-finetune`: `RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator")
    assert "Try a smaller batch size" not in line  # first line of the message only
    link = r"[trials/full-finetune.seed0.json](trials/full-finetune.seed0.json)"
    assert line.endswith(f"full traceback in {link} under `error.traceback`.")


def test_references_are_marked_as_not_measured_here(rendered: Path, run_dir: Path) -> None:
    references = _section(rendered.read_text(), "Published reference points")
    assert "not measured here" in references
    assert _table_rows(references) == [["RoBERTa-large fine-tuned", "accuracy", "0.914", "https://example.org/sentiment-benchmark-2024"]]
    run = records.read_run(run_dir)
    records.write_run(run_dir, run.model_copy(update={"references": []}))
    assert "## Published reference points" not in render_report(run_dir).read_text()


def test_recommendation_prefers_the_cheaper_tied_strategy_in_the_fixture(rendered: Path) -> None:
    recommendation = _section(rendered.read_text(), "Recommendation")
    assert recommendation.startswith(
        "**Use `embedding-classifier`** (feature family): Frozen sentence embeddings + logistic regression "
        "(scikit-learn). It has accuracy 0.800, macro-F1 0.794"
    )
    assert "`lora` is more accurate" in recommendation and "p = 0.688" in recommendation
    assert "1 strategy produced no predictions" in recommendation


def test_figures_are_written_and_linked(rendered: Path) -> None:
    text = rendered.read_text()
    for name in ("tradeoff_training.png", "tradeoff_latency.png", "per_class_f1.png"):
        assert f"]({name})" in text
        assert (rendered.parent / name).read_bytes()[:4] == b"\x89PNG"


def test_confusion_matrix_and_wrong_examples_of_the_best_strategy(rendered: Path) -> None:
    per_class = _section(rendered.read_text(), "Per-class results")
    assert "### Confusion matrix of `lora`" in per_class
    assert "| **neutral** | 1 | **9** | 2 |" in per_class
    examples = per_class.split("### Test examples `lora` gets wrong")[1]
    assert "5 of its 6 mistakes, most confident mistakes first" in examples
    assert len(_table_rows(examples)) == 5


def test_report_without_test_texts_skips_the_examples(run_dir: Path) -> None:
    (run_dir / "test_texts.json").unlink()
    text = render_report(run_dir).read_text()
    assert "gets wrong" not in text and "### Confusion matrix" in text


def test_cancelled_and_timed_out_trials_show_their_status(run_dir: Path) -> None:
    path = run_dir / "trials" / "full-finetune.seed0.json"
    record = records.read_trial(path)
    record.status, record.error = "cancelled", records.ErrorInfo(type="KeyboardInterrupt", message=" (interrupted by the user)")
    records.write_trial(path, record, run_dir)
    failures = _section(render_report(run_dir).read_text(), "Failures")
    assert "- `full-finetune` (cancelled): `KeyboardInterrupt: (interrupted by the user)` — see [trials/" in failures


def test_run_with_only_failed_trials_still_renders(run_dir: Path) -> None:
    for name in ("lora", "embedding-classifier", "zero-shot"):
        (run_dir / "trials" / f"{name}.seed0.json").unlink()
    text = render_report(run_dir).read_text()
    assert "nothing to recommend" in _section(text, "Recommendation")
    assert "## Leaderboard" not in text and "## Trade-offs" not in text
    assert "`full-finetune`" in _section(text, "Failures")


def test_old_or_third_party_trials_with_missing_and_extra_fields(run_dir: Path) -> None:
    (run_dir / "run.json").unlink()
    path = run_dir / "trials" / "zero-shot.seed0.json"
    record = json.loads(path.read_text())
    for key in ("family", "cost", "details", "description", "environment"):
        del record[key]
    record["predictions"]["probabilities"] = None
    record["something_new"] = {"nested": [1, 2]}
    path.write_text(json.dumps(record))
    (run_dir / "trials" / "broken.json").write_text("{not json")
    text = render_report(run_dir).read_text()
    rows = _table_rows(_section(text, "Leaderboard"))
    assert rows[2][1:3] == ["zero-shot", "—"] and rows[2][6] == "—"
    assert "- `trials/broken.json` (unreadable): `not valid JSON (line 1, column 2:" in text


def test_a_version_1_run_folder_renders_as_it_did(tmp_path: Path) -> None:
    """Records of slmbench 0.1 (schema 1: untyped, typed fields inside details) still load."""
    run_dir = tmp_path / "old"
    (run_dir / "trials").mkdir(parents=True)
    trial = _trial("knn", GOLD, set(range(10)), 1, 300).model_dump(mode="json")
    details = {"labelled_examples": 7, "prompt_tokens_per_example": 12.5, "params": {"k": 3}}
    old = {key: value for key, value in trial.items() if key not in {"schema_version", "labelled_examples", "options"}}
    old.update(
        schema=1,
        details=details,
        config={
            "strategy": "knn",
            "task_path": "/x/toy.yaml",
            "profile": V1_PROFILE,
            "seed": 0,
            "models": {"causal_lm_name": "a", "embedding_model_name": "b"},
            "params": {"k": 3},
        },
    )
    (run_dir / "trials" / "knn.json").write_text(json.dumps(old))
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "run_id": "quick-seed0",
                "task": "toy",
                "seed": 0,
                "command": "slmbench run --task toy",
                "labels": LABELS,
                "data": {"source": "file", "file": "/home/someone/data/toy.csv"},
                "profile": V1_PROFILE,
            }
        )
    )
    summary = load_summary(run_dir)
    (entry,) = summary.entries
    assert (entry.labelled_examples, entry.first.options, entry.first.config.options) == (7, {"k": 3}, {"k": 3})
    assert entry.first.prompt_tokens_per_example == 12.5 and summary.run.commands == ["slmbench run --task toy"]
    assert summary.run.data is not None and summary.run.data.file == "toy.csv"  # the file's name, as today, not the machine's path
    assert entry.first.config.profile == summary.run.profile == records.Budget(**V1_PROFILE)  # 0.1's caps, today's defaults
    assert "```sh\nslmbench run --task toy\n```" in render_report(run_dir).read_text()


def test_damaged_records_are_errors_that_name_the_file_and_field(tmp_path: Path) -> None:
    for content, problem in (
        ("[]", "holds a JSON list, not a trial record"),
        ("null", "holds a JSON NoneType, not a trial record"),
        ('{"strategy": "x", "metrics": {"accuracy": "high", "macro_f1": 0.5}}', "field 'metrics.accuracy'"),
        ("{" * 100_000, "not valid JSON"),
    ):
        path = tmp_path / "trial.json"
        path.write_text(content)
        with pytest.raises(records.RecordError, match=problem) as error:
            records.read_trial(path)
        assert str(error.value).startswith(str(path))
    (tmp_path / "run.json").write_text('{"run_id": 3}')
    with pytest.raises(records.RecordError, match=r"run.json: damaged run record: field 'run_id'"):
        records.read_run(tmp_path)


def test_the_fixture_is_exactly_what_the_writer_writes(run_dir: Path) -> None:
    """Every fixture file validates as today's schema and is rewritten byte for byte by the real writer."""
    for path in run_dir.rglob("*.json"):
        if path.name == "test_texts.json":
            continue
        before = path.read_text()
        assert json.loads(before)["schema_version"] == records.SCHEMA_VERSION, path
        if path.name == "run.json":
            records.write_run(run_dir, records.read_run(run_dir))
        else:
            records.write_trial(path, records.read_trial(path), run_dir)
        assert path.read_text() == before, path


def test_writes_are_atomic_and_leave_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "run.json"
    records.write_json(target, {"a": 1})

    def broken_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(records.store.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        records.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["run.json"]


def _trial(
    name: str,
    gold: list[int],
    wrong: set[int],
    train_seconds: float,
    memory_mb: float,
    seed: int = 0,
    train_size: int | None = None,
    **fields,
) -> records.TrialRecord:
    """An ok binary-task trial whose predictions are wrong exactly at the ``wrong`` indices."""
    predicted = [1 - g if i in wrong else g for i, g in enumerate(gold)]
    config = records.TrialConfig(
        strategy=name,
        task="toy",
        task_path="toy.yaml",
        profile=PROFILE,
        seed=seed,
        train_size=train_size,
        models=records.ModelsConfig(causal_lm="lm", embedding_model="embedder"),
    )
    return records.TrialRecord(
        strategy=name,
        family="feature",
        status="ok",
        labels=LABELS,
        config=config,
        metrics=classification_metrics(gold, predicted, LABELS),
        cost=records.Cost(train_seconds=train_seconds, predict_seconds=1.0, latency_ms_per_example=10.0, peak_memory_mb=memory_mb),
        predictions=records.PredictionRecord(gold=gold, predicted=predicted),
        **{"train_examples": train_size, **fields},
    )


def _save(directory: Path, trial: records.TrialRecord) -> None:
    key = records.trial_key(trial.name, trial.seed, trial.train_size)
    records.write_trial(records.trial_file(directory, key), trial, directory)


def _write_run(directory: Path, trials: list[records.TrialRecord], train: int = 500, seeds: tuple[int, ...] = (0,)) -> Path:
    splits = records.SplitSummary(sizes={"train": train, "validation": 50, "test": 100})
    records.write_run(directory, records.RunRecord(task="toy", run_id="r1", labels=LABELS, seeds=list(seeds), splits=splits))
    for trial in trials:
        _save(directory, trial)
    return directory


GOLD = [i % 2 for i in range(100)]


def test_constraints_change_the_answer(tmp_path: Path) -> None:
    run = load_summary(
        _write_run(
            tmp_path,
            [
                _trial("big", GOLD, set(range(5)), train_seconds=600, memory_mb=3000),
                _trial("small", GOLD, set(range(40)), train_seconds=1, memory_mb=300),
            ],
        )
    )
    assert recommend(run).choice.name == "big"  # 0.95 vs 0.60: significantly better, so no switch
    constrained = recommend(run, Constraints(max_train_minutes=5))
    assert (constrained.choice.name, constrained.best.name) == ("small", "big")
    assert constrained.excluded == {"big": ["training time 10 min > 5 min"]}
    text = render_report(run.directory, Constraints(max_train_minutes=5)).read_text()
    assert "**Use `small`**" in text and "rule out `big` (training time 10 min > 5 min)" in text


def test_no_strategy_meets_the_constraints(tmp_path: Path) -> None:
    run_dir = _write_run(tmp_path, [_trial("big", GOLD, set(range(5)), train_seconds=600, memory_mb=3000)])
    advice = recommend(load_summary(run_dir), Constraints(max_memory_mb=100))
    assert advice.choice is None and advice.best.name == "big"
    text = render_report(run_dir, Constraints(max_memory_mb=100)).read_text()
    assert "**No strategy meets your constraints** (peak memory ≤ 100 MiB)" in text


def test_a_choice_no_better_than_the_majority_floor_is_not_recommended(tmp_path: Path) -> None:
    gold = [0] * 70 + [1] * 30  # the majority label "no" alone scores 0.70
    floor = records.Floors(majority_label=LABELS[0], accuracy=0.70, macro_f1=0.41)
    run_dir = _write_run(tmp_path, [_trial("weak", gold, set(range(35)), train_seconds=1, memory_mb=300)])
    records.write_run(run_dir, records.read_run(run_dir).model_copy(update={"floors": floor}))
    recommendation = _section(render_report(run_dir).read_text(), "Recommendation")
    assert "**No strategy beats the majority-class floor**: always answering `no` scores 0.700" in recommendation
    assert "`weak`, has accuracy 0.650" in recommendation and "**Use" not in recommendation
    beaten = _write_run(tmp_path / "beaten", [_trial("strong", gold, set(range(5)), train_seconds=1, memory_mb=300)])
    records.write_run(beaten, records.read_run(beaten).model_copy(update={"floors": floor}))
    assert "**Use `strong`**" in _section(render_report(beaten).read_text(), "Recommendation")
    # a cheap strategy at the floor, statistically tied with one above it (McNemar p = 0.0625), is not chosen for it
    tied = _write_run(
        tmp_path / "tied",
        [
            _trial("learnt", gold, set(range(25)), train_seconds=60, memory_mb=3000),
            _trial("constant", gold, set(range(30)), train_seconds=0.01, memory_mb=10),
        ],
    )
    records.write_run(tied, records.read_run(tied).model_copy(update={"floors": floor}))
    assert recommend(load_summary(tied)).choice.name == "learnt"
    assert "**Use `learnt`**" in _section(render_report(tied).read_text(), "Recommendation")


def test_labelled_examples_default_to_train_plus_validation(tmp_path: Path) -> None:
    run = load_summary(
        _write_run(
            tmp_path,
            [
                _trial("fine-tuned", GOLD, set(range(5)), train_seconds=60, memory_mb=1000),
                _trial("zero-shot", GOLD, set(range(30)), train_seconds=0, memory_mb=1000, labelled_examples=0),
            ],
        )
    )
    advice = recommend(run, Constraints(max_labelled_examples=100))
    assert advice.choice.name == "zero-shot"
    assert advice.excluded == {"fine-tuned": ["labelled examples 550 > 100"]}


def test_statistically_tied_cheaper_strategy_is_preferred(tmp_path: Path) -> None:
    big_wrong = set(range(15))  # 0.85
    small_wrong = set(range(13)) | set(range(15, 20))  # 0.82; discordant: 5 right only for big, 2 only for small
    run = load_summary(
        _write_run(
            tmp_path,
            [
                _trial("big", GOLD, big_wrong, train_seconds=600, memory_mb=3000),
                _trial("small", GOLD, small_wrong, train_seconds=1, memory_mb=300),
            ],
        )
    )
    advice = recommend(run)
    assert (advice.best.name, advice.choice.name) == ("big", "small")
    assert advice.tie_p_value == pytest.approx(2 * (1 + 7 + 21) / 2**7)
    assert "but not significantly so on these 100 test examples" in render_report(run.directory).read_text()


def test_tied_strategy_that_is_not_cheaper_is_not_preferred(tmp_path: Path) -> None:
    run = load_summary(
        _write_run(
            tmp_path,
            [
                _trial("big", GOLD, set(range(15)), train_seconds=600, memory_mb=3000),
                _trial("hungry", GOLD, set(range(13)) | set(range(15, 20)), train_seconds=1, memory_mb=4000),
            ],
        )
    )
    assert recommend(run).choice.name == "big"


def test_noise_level_cost_differences_never_justify_a_worse_strategy(tmp_path: Path) -> None:
    run = load_summary(
        _write_run(
            tmp_path,
            [
                _trial("better", GOLD, set(range(15)), train_seconds=0.004, memory_mb=0.1),
                _trial("worse", GOLD, set(range(13)) | set(range(15, 20)), train_seconds=0.001, memory_mb=0.0),
            ],
        )
    )
    assert recommend(run).choice.name == "better"


# --- Statistics -----------------------------------------------------------------------------------


def test_learning_curves_name_where_the_best_strategy_changes(tmp_path: Path) -> None:
    """knn leads with few examples, lora overtakes it from 64; zero-shot, learning nothing, is a flat line."""
    run_dir = _write_run(
        tmp_path,
        [
            _trial("lora", GOLD, set(range(10)), 300, 900, train_examples=500),
            _trial("knn", GOLD, set(range(25)), 1, 300, train_examples=500),
            _trial("zero-shot", GOLD, set(range(45)), 0, 600, labelled_examples=0, learns_from_train=False),
        ],
        train=500,
    )
    points = {16: {"lora": 48, "knn": 35}, 64: {"lora": 20, "knn": 30}}
    for size, wrong in points.items():
        for name, n_wrong in wrong.items():
            _save(run_dir, _trial(name, GOLD, set(range(n_wrong)), 1, 300, train_size=size))

    run = load_summary(run_dir)
    assert [entry.name for entry in run.entries] == ["lora", "knn", "zero-shot"]  # the leaderboard: whole split
    curves = {name: {size: point.mean for size, point in points.items()} for name, points in run.curves.items()}
    flat = run.flat
    assert curves == {"lora": {16: 0.52, 64: 0.80, 500: 0.90}, "knn": {16: 0.65, 64: 0.70, 500: 0.75}}
    assert flat == {"zero-shot": 0.55}
    assert leader_changes(curves, flat) == [(16, "knn", 0.65), (64, "lora", 0.80)]

    section = _section(render_report(run_dir).read_text(), "Learning curves")
    assert "`lora` overtakes `knn` between 16 and 64 examples (0.800 at 64)" in section
    assert "![Test accuracy against labelled train examples](learning_curves.png)" in section
    assert (run_dir / "learning_curves.png").stat().st_size > 0
    assert _table_rows(section)[0] == ["knn", "0.650", "0.700", "0.750"]


def test_learning_curve_with_failed_points_and_no_size_shared_by_all(tmp_path: Path) -> None:
    run_dir = _write_run(tmp_path, [_trial("knn", GOLD, set(range(25)), 1, 300, train_examples=500)], train=500)
    lora = _trial("lora", GOLD, set(), 1, 300, train_size=64).model_copy(
        update={"status": "timeout", "metrics": None, "error": records.ErrorInfo(type="TrialTimeout", message="stopped after 60 s")}
    )
    for trial in (
        _trial("lora", GOLD, set(range(30)), 1, 300, train_size=16),
        lora,
        _trial("knn", GOLD, set(range(40)), 1, 300, train_size=32),
    ):
        _save(run_dir, trial)

    summary = load_summary(run_dir)
    curves = {name: {size: point.mean for size, point in points.items()} for name, points in summary.curves.items()}
    flat = summary.flat
    assert curves == {"lora": {16: 0.70}, "knn": {32: 0.60, 500: 0.75}} and flat == {}
    assert leader_changes(curves, flat) == [(16, "lora", 0.70), (32, "knn", 0.60)]
    markdown = render_report(run_dir).read_text()
    assert "`knn` overtakes `lora` between 16 and 32 examples" in _section(markdown, "Learning curves")
    assert "- `lora` at 64 train examples (timeout): `TrialTimeout: stopped after 60 s`" in _section(markdown, "Failures")


def test_mcnemar_exact_matches_a_hand_computed_binomial() -> None:
    gold = [1] * 10
    a = [1, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # right on 4
    b = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]  # right on 9; discordant: 1 only a, 6 only b
    # Two-sided exact test: 2 * P(X <= 1), X ~ Binomial(7, 1/2) = 2 * (1 + 7) / 128
    assert stats.mcnemar_exact(gold, a, b) == pytest.approx(0.125)
    assert stats.mcnemar_exact(gold, a, a) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_bootstrap_interval_contains_the_point_estimate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, 80)
    predicted = np.where(rng.random(80) < 0.7, gold, rng.integers(0, 3, 80))
    for metric in (stats.accuracy, stats.macro_f1(3)):
        low, high = stats.bootstrap_ci(gold, predicted, metric, seed=seed)
        assert low <= metric(gold, predicted) <= high
        assert high - low > 0.05
    assert stats.bootstrap_ci(gold, predicted, stats.accuracy, seed=1) == stats.bootstrap_ci(gold, predicted, stats.accuracy, seed=1)


def test_vectorized_macro_f1_agrees_with_scikit_learn() -> None:
    gold, predicted = [0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 0]  # class 3 is never gold nor predicted
    expected = f1_score(gold, predicted, labels=[0, 1, 2, 3], average="macro", zero_division=0)
    assert stats.macro_f1(4)(np.array(gold), np.array(predicted)) == pytest.approx(expected)


def test_pareto_front() -> None:
    costs, scores = [0, 3, 400, 600, 3], [0.55, 0.80, 0.85, 0.60, 0.70]
    assert stats.pareto_front(costs, scores) == [0, 1, 2]


# --- Comparison across runs -----------------------------------------------------------------------


def test_comparison_lists_the_best_strategy_of_each_run_and_mean_ranks(run_dir: Path, tmp_path: Path) -> None:
    other = _write_run(
        tmp_path / "toy",
        [
            _trial("lora", GOLD, set(range(40)), train_seconds=600, memory_mb=3000),
            _trial("small", GOLD, set(range(10)), train_seconds=1, memory_mb=300),
        ],
    )
    text = render_comparison([run_dir, other])
    assert _table_rows(_section(text, "Best strategy per run")) == [
        ["sentiment/20251123-190158", "40", "lora", "0.850", "0.845", "3", "1"],
        ["toy/r1", "100", "small", "0.900", "0.900", "2", "0"],
    ]
    section = _section(text, "Every strategy on every run")
    rows = {row[0]: row[1:] for row in _table_rows(section)}
    assert rows["lora"] == ["**0.850 (#1)**", "0.600 (#2)", "1.50"]
    assert rows["full-finetune"] == ["failed", "—", "—"]
    assert rows["small"] == ["—", "**0.900 (#1)**", "1.00"]
    assert list(rows)[:2] == ["small", "lora"]  # ordered by mean rank
    assert "Wins: `lora` on `sentiment`; `small` on `toy`." in section


# --- Deployment check -----------------------------------------------------------------------------


def test_deployment_check_shows_each_copy_against_the_trained_model_and_errors_in_place(tmp_path: Path) -> None:
    latency = records.Latency(p50_ms=40.0, p95_ms=55.0, requests=20)
    deployment = [
        records.DeploymentCheck(
            quantization="float32", accuracy=0.9, macro_f1=0.9, size_bytes=540 * 2**20, latency_ms_per_example=80.0, single_request=latency
        ),
        records.DeploymentCheck(
            quantization="nf4", accuracy=0.86, macro_f1=0.85, size_bytes=170 * 2**20, latency_ms_per_example=120.0, single_request=latency
        ),
        records.DeploymentCheck(quantization="int8", error="UnsupportedQuantization: int8 is not supported on mps here"),
    ]
    run_dir = _write_run(
        tmp_path,
        [
            _trial("lora", GOLD, set(range(10)), train_seconds=60, memory_mb=1000, deployment=deployment),
            _trial("zero-shot", GOLD, set(range(30)), train_seconds=0, memory_mb=1000),
        ],
    )
    section = _section(render_report(run_dir).read_text(), "Deployment check")
    assert _table_rows(section) == [
        ["lora", "`float32`", "0.900", "+0.000", "0.900", "540.0 MiB", "80", "55", ""],
        ["lora", "`nf4`", "0.860", "-0.040", "0.850", "170.0 MiB", "120", "55", ""],
        ["lora", "`int8`", "—", "—", "—", "—", "—", "—", "UnsupportedQuantization: int8 is not supported on mps here"],
    ]
    assert "No GGUF export" in section


def test_decision_cost_sums_trial_wall_time_and_separates_the_unchosen_search(tmp_path: Path) -> None:
    tuning = records.Tuning(
        method="optuna",
        budget=3,
        chosen={"learning_rate": 1e-4},
        tried=[
            records.TuningTrial(options={"learning_rate": 1e-3}, validation_accuracy=0.6, seconds=30.0),
            records.TuningTrial(options={"learning_rate": 1e-4}, validation_accuracy=0.8, seconds=40.0),
            records.TuningTrial(options={"learning_rate": 1e-2}, validation_accuracy=None, state="pruned", seconds=10.0),
        ],
    )
    ensemble = _trial(
        "ensemble",
        GOLD,
        set(range(5)),
        train_seconds=80,
        memory_mb=2000,
        started_at="2026-01-01T10:02:30+00:00",
        finished_at="2026-01-01T10:02:32+00:00",
    )
    ensemble.config = ensemble.config.model_copy(update={"inputs": {"lora.seed0": "abc", "zero-shot.seed0": "def"}})
    run_dir = _write_run(
        tmp_path,
        [
            _trial(
                "lora",
                GOLD,
                set(range(10)),
                train_seconds=80,
                memory_mb=1000,
                tuning=tuning,
                started_at="2026-01-01T10:00:00+00:00",
                finished_at="2026-01-01T10:02:00+00:00",
            ),
            _trial(
                "zero-shot",
                GOLD,
                set(range(30)),
                train_seconds=0,
                memory_mb=1000,
                started_at="2026-01-01T10:02:00+00:00",
                finished_at="2026-01-01T10:02:30+00:00",
            ),
            ensemble,
        ],
    )
    section = _section(render_report(run_dir).read_text(), "Data and protocol")
    assert (
        "What this decision cost: 3 trials, 152 s of trial wall time (152 s per seed), each trial from its start "
        "to its record; 152 s from the first trial's start to the last one's end"
    ) in section
    assert (
        "Training 80 s, of which 40 s went to the option settings the search tried and did not choose; prediction "
        "on the test split 2 s; the remaining 70 s"
    ) in section  # the ensemble's costs include its members'
    assert "One fit per trial (training without the unchosen settings, plus prediction): 42 s." in section
