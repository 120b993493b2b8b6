"""Results while a run goes on: the report rewritten after every trial (readable whenever the run is
killed), the live leaderboard, and the deployment check spent on the contenders only."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import fake_strategies
import pytest

from slmbench import records
from slmbench.cli.leaderboard import LiveLeaderboard
from slmbench.cli.main import main
from slmbench.common.progress import ProgressReporter
from slmbench.engine.run_options import RunOptions
from slmbench.engine.runner import run_benchmark
from slmbench.report.contenders import contenders, pareto_front
from slmbench.report.summary import load_summary
from slmbench.testing.toys import toy_task_files

FAKES_SCRIPT = Path(fake_strategies.__file__)
FAKES = {"fake-strategies": fake_strategies.plugin()}


def assert_readable(report: Path) -> str:
    """``report`` is a whole report: its opening, its leaderboard, a final newline, and every figure it
    shows is a PNG on disk that reads back."""
    from PIL import Image

    content = report.read_text(encoding="utf-8")
    assert content.startswith("# Decision report") and content.endswith("\n"), content[-200:]
    assert "## Recommendation" in content
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", content):
        with Image.open(report.parent / figure) as image:
            image.load()
    return content


def test_the_report_exists_after_the_first_trial_and_grows_with_what_is_still_to_come(registry, toy_task_file, tmp_path):
    options = RunOptions(
        task=str(toy_task_file),
        strategies="majority,last-label,first-label",
        profile="smoke",
        data_dir=str(toy_task_file.parent),
        output=str(tmp_path / "runs"),
    )
    seen: list[str] = []
    report = tmp_path / "runs" / "toy-sentiment" / "smoke" / "report.md"

    def trial_ended(record, reused: bool) -> None:  # the report as the trial before this one left it
        seen.append(report.read_text(encoding="utf-8") if report.exists() else "")

    run_benchmark(options, registry, ProgressReporter(False), on_trial=trial_ended)

    assert seen[0] == ""  # nothing before the first trial
    second, third = seen[1], seen[2]
    assert "1 of 3 trials finished" in second and "Still to come: `last-label.seed0`, `first-label.seed0`." in second
    assert "2 of 3 trials finished" in third and "Still to come: `first-label.seed0`." in third
    assert "last-label" not in second.split("## Leaderboard")[1].split("##")[0]  # the leaderboard so far: majority alone
    assert "last-label" in third.split("## Leaderboard")[1].split("##")[0]
    final = assert_readable(report)
    assert "still going" not in final and "Still to come" not in final


def test_killing_a_run_at_any_moment_leaves_a_readable_report(toy_task_file, tmp_path):
    """SIGKILL (no handler runs) at moments spread over a run's life, each time resumed: the report on disk
    is always whole, its figures too (each file is replaced by a rename, never rewritten in place)."""
    env = {**os.environ, "PYTHONPATH": str(FAKES_SCRIPT.parent), "SLMBENCH_TEST_SLEEP_SECONDS": "0.5"}
    strategies = "majority,last-label,first-label,sleeper,tunable,quantizable"
    start = [sys.executable, str(FAKES_SCRIPT), "run", "--task", str(toy_task_file), "--strategies", strategies]
    start += ["--profile", "smoke", "--data-dir", str(toy_task_file.parent), "--output", str(tmp_path / "runs"), "--no-progress"]
    run_dir = tmp_path / "runs" / "toy-sentiment" / "smoke"
    resume = [sys.executable, str(FAKES_SCRIPT), "run", "--resume", str(run_dir), "--no-progress"]
    draw = random.Random(0)
    reports = 0
    for attempt in range(6):
        process = subprocess.Popen(start if attempt == 0 else resume, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (run_dir / "report.md").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(draw.uniform(0, 3))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        if (run_dir / "report.md").exists():
            assert_readable(run_dir / "report.md")
            reports += 1
    assert reports == 6
    subprocess.run(resume, env=env, check=True, capture_output=True, timeout=300)
    final = assert_readable(run_dir / "report.md")
    assert "still going" not in final
    assert {path.stem for path in (run_dir / "trials").glob("*.json")} == {f"{name}.seed0" for name in strategies.split(",")}


def test_the_terminal_leaderboard_ranks_finished_strategies_and_counts_failures():
    board = LiveLeaderboard()

    def record(name: str, accuracy: float | None, seed: int = 0, train_size: int | None = None) -> records.TrialRecord:
        from slmbench.tasks.profiles import get_profile

        models = records.ModelsConfig(causal_lm="lm", embedding_model="encoder")
        config = records.TrialConfig(
            strategy=name, task_path="t.yaml", seed=seed, train_size=train_size, profile=get_profile("smoke"), models=models
        )
        status = "ok" if accuracy is not None else "failed"
        trial = records.TrialRecord(strategy=name, variant=name, task="toy", config=config, status=status)
        if accuracy is not None:
            trial.metrics = records.Metrics(accuracy=accuracy, macro_f1=accuracy, per_class={}, confusion_matrix=[])
            trial.cost = records.Cost(train_seconds=2.0, predict_seconds=1.0)
        return trial

    assert board.line() == "leaderboard after 0 trials: no strategy finished ok yet"
    for trial in (record("a", 0.5), record("b", 0.75), record("a", 0.7, seed=1), record("c", None), record("b", 0.9, train_size=10)):
        board.add(trial)
    assert board.ranked() == [("b", 0.75, 1, 2.0), ("a", pytest.approx(0.6), 2, 2.0)]
    assert board.line() == "leaderboard after 5 trials, 1 failed: 1. b 0.750; 2. a 0.600"
    assert board.table().row_count == 2


def test_a_pipe_gets_the_leaderboard_as_a_line_after_each_trial(toy_task_file, tmp_path, capsys):
    argv = ["run", "--task", str(toy_task_file), "--strategies", "majority,first-label", "--profile", "smoke"]
    argv += ["--data-dir", str(toy_task_file.parent), "--output", str(tmp_path / "runs")]
    assert main(argv, extra_plugins=FAKES) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("leaderboard after")]
    assert [line.split(":")[0] for line in lines] == ["leaderboard after 1 trials", "leaderboard after 2 trials"]


# --- the deployment check, after the trials, for the contenders -------------------------------------


@pytest.fixture()
def large_toy_task(tmp_path) -> Path:
    """A toy task with 200 test examples under ``quick``: enough for a fixed wrong label to be significantly worse."""
    return toy_task_files(tmp_path / "task", per_label={"negative": 200, "neutral": 400, "positive": 200})


def _run(task: Path, tmp_path: Path, *extra: str) -> Path:
    """majority and quantizable (always negative) on ``task``, quick profile, no export check; the run folder."""
    argv = ["run", "--task", str(task), "--strategies", "majority,quantizable", "--profile", "quick", "--set", "quantizable.label=0"]
    argv += ["--data-dir", str(task.parent), "--output", str(tmp_path / "runs"), "--run-id", "r", "--no-progress", "--export-check", "none"]
    assert main([*argv, *extra], extra_plugins=FAKES) == 0
    return tmp_path / "runs" / "toy-sentiment" / "r"


def _checked(log: Path) -> list[int]:
    """The process ids that checked quantizable's copy, one per check."""
    lines = log.read_text().split() if log.exists() else []
    return [int(line.rsplit(":", 1)[1]) for line in lines if line.startswith("quantizable:checked:")]


def _checks(run_dir: Path) -> list[str]:
    return [check["quantization"] for check in json.loads((run_dir / "trials" / "quantizable.seed0.json").read_text())["deployment"]]


def test_a_strategy_that_cannot_matter_is_not_checked_until_resume_makes_it_a_contender(large_toy_task, tmp_path, monkeypatch):
    log = tmp_path / "fits.log"
    monkeypatch.setenv("SLMBENCH_TEST_LOG", str(log))
    run_dir = _run(large_toy_task, tmp_path)

    summary = load_summary(run_dir)
    assert list(contenders(summary)) == ["majority"]  # quantizable: significantly worse, and dominated on every front
    assert _checks(run_dir) == [] and _checked(log) == []
    report = (run_dir / "report.md").read_text()
    assert "Not contenders (significantly worse than the recommendation and off every front), not checked: `quantizable`" in report

    # resumed with a constraint majority breaks (it needs labelled examples): the contenders change
    assert main(["run", "--resume", str(run_dir), "--no-progress", "--max-labelled-examples", "1"], extra_plugins=FAKES) == 0
    assert _checks(run_dir) == ["int8"] and _checked(log) == [os.getpid()]  # in this process (the local executor)
    assert log.read_text().split().count("quantizable") == 1  # the trial was reused, only its check is new

    assert main(["run", "--resume", str(run_dir), "--no-progress"], extra_plugins=FAKES) == 0
    assert len(_checked(log)) == 1  # checked once: kept, not redone


@pytest.mark.parametrize(("which", "expected"), [("all", ["int8"]), ("none", [])])
def test_deployment_check_all_or_none(large_toy_task, tmp_path, monkeypatch, which, expected):
    log = tmp_path / "fits.log"
    monkeypatch.setenv("SLMBENCH_TEST_LOG", str(log))
    run_dir = _run(large_toy_task, tmp_path, "--deployment-check", which)
    assert _checks(run_dir) == expected
    assert records.read_run(run_dir).options.deployment_check == which


def test_a_run_that_keeps_no_artifacts_checks_first_then_deletes_them(large_toy_task, tmp_path, monkeypatch):
    log = tmp_path / "fits.log"
    monkeypatch.setenv("SLMBENCH_TEST_LOG", str(log))
    run_dir = _run(large_toy_task, tmp_path, "--deployment-check", "all", "--keep-artifacts", "none")
    assert _checks(run_dir) == ["int8"]
    assert not list((run_dir / "artifacts").glob("*"))  # every trial's artifacts deleted after the check


def test_pareto_front_keeps_the_undominated():
    entries = load_summary(Path(__file__).parent / "fixtures" / "run_small").entries
    by_train = pareto_front(entries, lambda entry: entry.cost("train_seconds"))
    assert by_train and all(entry in entries for entry in by_train)
    best = max(entries, key=lambda entry: entry.accuracy)
    assert best in by_train  # the most accurate is always on every front
    assert pareto_front(entries, lambda entry: 1.0) == [entry for entry in entries if entry.accuracy == best.accuracy]
    assert pareto_front(entries, lambda entry: None) == []
    cheapest = min(entries, key=lambda entry: entry.cost("train_seconds"))
    assert cheapest in by_train  # and the cheapest
    within_noise = pareto_front(entries, lambda entry: entry.cost("train_seconds"), noise=1e9)  # every cost equal
    assert within_noise == [entry for entry in entries if entry.accuracy == best.accuracy]


def test_every_strategy_at_least_as_accurate_as_the_recommendation_is_a_contender():
    from slmbench.report.recommend import Constraints, recommend

    summary = load_summary(Path(__file__).parent / "fixtures" / "run_small")
    choice = recommend(summary, Constraints(max_train_minutes=0.01)).choice  # a cheap recommendation, others more accurate
    reasons = contenders(summary, Constraints(max_train_minutes=0.01))
    assert choice is not None and reasons[choice.name][0] == "recommended"
    better = [entry.name for entry in summary.entries if entry.accuracy >= choice.accuracy and entry is not choice]
    assert better and all("at least as accurate as the recommendation" in reasons[name] for name in better)
