"""``slmbench predict``: every built-in strategy reloaded in a fresh process predicts exactly as its trial
did; the default trial (the recommendation, the seed best on validation); what a run keeps; bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import check, run_cli
from conftest import BUILT_IN_STRATEGIES, run_toy_task

from slmbench.cli.main import main
from slmbench.records import read_trial, trial_file, write_trial
from slmbench.testing import tiny_models
from slmbench.testing.toys import toy_task_files

BUILT_IN = BUILT_IN_STRATEGIES


def _run(folder: Path, run_id: str, strategies: str, *extra: str) -> Path:
    return run_toy_task(folder, run_id, strategies, *extra)


@pytest.fixture(scope="module")
def toy_run(all_strategies_run) -> Path:
    """Every built-in strategy, one seed."""
    return all_strategies_run


@pytest.fixture(scope="module")
def test_csv(toy_run, tmp_path_factory) -> Path:
    """The run's test texts as a CSV file, in the task's text column."""
    path = tmp_path_factory.mktemp("input") / "test.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([text] for text in json.loads((toy_run / "test_texts.json").read_text()))
    return path


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_built_in_strategy_predicts_its_trials_test_predictions_in_a_fresh_process(toy_run, test_csv, tmp_path):
    outputs = {name: tmp_path / f"{name}.jsonl" for name in BUILT_IN}
    calls = [["predict", str(toy_run), "--strategy", name, str(test_csv), "--output", str(path)] for name, path in outputs.items()]
    script = "import sys, json\nfrom slmbench.cli.main import main\nsys.exit(max(main(argv) for argv in json.loads(sys.argv[1])))"
    done = subprocess.run([sys.executable, "-c", script, json.dumps(calls)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    for name, path in outputs.items():
        record = read_trial(trial_file(toy_run, f"{name}.seed0"))
        assert record.ok, name
        predicted = _jsonl(path)
        assert [row["label"] for row in predicted] == [record.labels[i] for i in record.predictions.predicted], name
        for row, recorded in zip(predicted, record.predictions.probabilities):
            assert list(row["probabilities"]) == record.labels
            assert max(abs(p - r) for p, r in zip(row["probabilities"].values(), recorded)) <= 6e-6, name  # recorded to 5 places


def test_one_text_on_stdin_gives_a_json_line_with_a_label_and_probabilities(toy_run):
    slmbench = Path(sys.executable).parent / "slmbench"
    done = subprocess.run([slmbench, "predict", toy_run, "-"], input="Profit rose 20%\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    prediction = json.loads(line)
    labels = read_trial(trial_file(toy_run, "tfidf-linear.seed0")).labels
    assert prediction["label"] in labels and list(prediction["probabilities"]) == labels
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-5
    assert "the report's recommendation" in done.stderr


def test_csv_output_to_a_file_has_one_row_per_text_and_a_probability_column_per_label(toy_run, test_csv, tmp_path):
    output = tmp_path / "predictions.csv"
    assert main(["predict", str(toy_run), "--strategy", "knn-vote", str(test_csv), "--format", "csv", "--output", str(output)]) == 0
    rows = list(csv.reader(output.open(encoding="utf-8")))
    record = read_trial(trial_file(toy_run, "knn-vote.seed0"))
    assert rows[0] == ["label", *(f"probability_{name}" for name in record.labels)]
    assert [row[0] for row in rows[1:]] == [record.labels[i] for i in record.predictions.predicted]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predictions.csv"]  # no partial file left


def test_the_default_seed_is_the_best_on_validation_never_on_test(toy_run, tmp_path):
    from slmbench.engine.reuse import find_trial

    run_dir = Path(shutil.copytree(toy_run, tmp_path / "run"))
    seed0 = read_trial(trial_file(run_dir, "tfidf-linear.seed0"))
    validation, test = seed0.validation_predictions, seed0.predictions
    wrong = [(label + 1) % len(seed0.labels) for label in validation.gold]
    seed1 = seed0.model_copy(
        update={
            "config": seed0.config.model_copy(update={"seed": 1}),
            "validation_predictions": validation.model_copy(update={"predicted": list(validation.gold)}),
            "predictions": test.model_copy(update={"predicted": [(label + 1) % len(seed0.labels) for label in test.gold]}),
        }
    )
    seed0 = seed0.model_copy(update={"validation_predictions": validation.model_copy(update={"predicted": wrong})})
    write_trial(trial_file(run_dir, "tfidf-linear.seed0"), seed0, run_dir)
    write_trial(trial_file(run_dir, "tfidf-linear.seed1"), seed1, run_dir)

    chosen = find_trial(run_dir, "tfidf-linear")
    assert chosen.key == "tfidf-linear.seed1" and chosen.record.seed == 1  # better on validation, worse on test
    assert find_trial(run_dir, "tfidf-linear", seed=0).key == "tfidf-linear.seed0"


def test_the_report_says_what_the_run_kept_and_keep_artifacts_none_keeps_nothing(toy_run, tmp_path):
    report = (toy_run / "report.md").read_text()
    assert f"the artifacts of {len(BUILT_IN)} of its {len(BUILT_IN)} finished trials" in report

    bare = _run(tmp_path, "bare", "tfidf-linear,knn-vote", "--keep-artifacts", "none")
    assert not any((bare / "artifacts").glob("*/*"))
    assert "the artifacts of 0 of its 2 finished trials" in (bare / "report.md").read_text()
    assert json.loads((bare / "run.json").read_text())["options"]["keep_artifacts"] == "none"  # --resume keeps to it


# --- bad input: one clear line, exit 2, nothing written -------------------------------------------


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory) -> Path:
    """A working folder with a run of a reusable strategy, one that saves nothing (majority) and one that
    fails (exploding), a run that kept no artifacts, and input files good and bad."""
    site = tmp_path_factory.mktemp("hostile")
    for argv in (
        [*_run_argv(site, "mixed"), "--strategies", "tfidf-linear,majority,exploding"],
        [*_run_argv(site, "bare"), "--strategies", "tfidf-linear", "--keep-artifacts", "none"],
    ):
        result = run_cli(argv, cwd=site, kind="cli argument", invalid=None, writes=site / "runs")
        assert result.code in (0, 1), str(result)
    inputs = site / "inputs"
    inputs.mkdir()
    (inputs / "good.csv").write_text("text\nProfit rose\nLoss widened\n", encoding="utf-8")
    (inputs / "body.csv").write_text("body\nProfit rose\n", encoding="utf-8")
    (inputs / "empty.csv").write_bytes(b"")
    (inputs / "header.csv").write_text("text\n", encoding="utf-8")
    (inputs / "latin1.csv").write_bytes("text\nCaf\xe9 profit\n".encode("latin-1"))
    (inputs / "notes.txt").write_text("Profit rose\n", encoding="utf-8")
    return site


def _run_argv(site: Path, run_id: str) -> list[str]:
    task = toy_task_files(site / "task")
    return ["run", "--task", str(task), "--profile", "smoke", "--output", str(site / "runs"), "--run-id", run_id, "--no-progress"]


MIXED = "runs/toy-sentiment/mixed"
BAD_CALLS = {
    "missing column": (["predict", MIXED, "inputs/body.csv"], "--text-column"),
    "empty file": (["predict", MIXED, "inputs/empty.csv"], "empty"),
    "header only": (["predict", MIXED, "inputs/header.csv"], "no rows"),
    "not UTF-8": (["predict", MIXED, "inputs/latin1.csv"], "UTF-8"),
    "unknown file type": (["predict", MIXED, "inputs/notes.txt"], ".txt"),
    "no such input": (["predict", MIXED, "inputs/none.csv"], "not found"),
    "no such trial": (["predict", MIXED, "--strategy", "lora", "inputs/good.csv"], "no trial of 'lora'"),
    "no such seed": (["predict", MIXED, "--strategy", "tfidf-linear", "--seed", "7", "inputs/good.csv"], "seed 7"),
    "failed trial": (["predict", MIXED, "--strategy", "exploding", "inputs/good.csv"], "ended failed"),
    "strategy without save and load": (["predict", MIXED, "--strategy", "majority", "inputs/good.csv"], "cannot be reused"),
    "artifacts not kept": (["predict", "runs/toy-sentiment/bare", "inputs/good.csv"], "were not kept"),
    "not a run folder": (["predict", "inputs", "inputs/good.csv"], "not a slmbench run folder"),
    "no such run folder": (["predict", "runs/none", "inputs/good.csv"], "no such folder"),
    "a file as run folder": (["predict", "inputs/good.csv", "inputs/good.csv"], "not a folder"),
    "output in a missing folder": (["predict", MIXED, "inputs/good.csv", "--output", "none/out.jsonl"], "--output"),
    "output is a folder": (["predict", MIXED, "inputs/good.csv", "--output", "inputs"], "--output"),
    "bad format": (["predict", MIXED, "inputs/good.csv", "--format", "xml"], "--format"),
    "bad batch size": (["predict", MIXED, "inputs/good.csv", "--batch-size", "0"], "--batch-size"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_is_one_clear_line_and_writes_nothing(hostile_site, case):
    argv, culprit = BAD_CALLS[case]
    result = run_cli(argv, cwd=hostile_site, kind="cli argument", invalid=True)
    check(result, culprit, accept=False)
    assert result.code == 2


def test_an_ensemble_reloads_the_members_it_combined_not_one_that_failed(tmp_path):
    causal_lm, embedder = tiny_models()
    argv = [*_run_argv(tmp_path, "ensemble"), "--strategies", "tfidf-linear,knn-vote,exploding,ensemble"]
    result = run_cli(
        [*argv, "--model", str(causal_lm), "--embedding-model", str(embedder)],
        cwd=tmp_path,
        kind="cli argument",
        invalid=None,
        writes=tmp_path / "runs",
    )
    assert result.code == 1 and result.outcome == "clean error", str(result)  # exploding failed, the others ran
    run_dir = tmp_path / "runs" / "toy-sentiment" / "ensemble"
    record = read_trial(trial_file(run_dir, "ensemble.seed0"))
    assert record.ok and sorted(record.details["members"]) == ["knn-vote", "tfidf-linear"] and "exploding.seed0" in record.config.inputs
    test_texts = json.loads((run_dir / "test_texts.json").read_text())
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in test_texts), encoding="utf-8")

    argv = ["predict", str(run_dir), "--strategy", "ensemble", "test.jsonl", "--output", "out.jsonl"]
    result = run_cli(argv, cwd=tmp_path, kind="cli argument", invalid=False, writes=tmp_path / "out.jsonl")
    assert result.outcome == "accepted", str(result)
    assert [row["label"] for row in _jsonl(tmp_path / "out.jsonl")] == [record.labels[i] for i in record.predictions.predicted]


def test_a_device_this_machine_lacks_is_one_clear_line(hostile_site):
    result = run_cli(["predict", MIXED, "inputs/good.csv", "--device", "cuda"], cwd=hostile_site, kind="cli argument", invalid=None)
    check(result, "--device cuda", accept=not torch_cuda())
    result = run_cli(["predict", MIXED, "inputs/good.csv", "--device", "gpu"], cwd=hostile_site, kind="cli argument", invalid=True)
    check(result, "--device 'gpu': not a device", accept=False)


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


ARTIFACT_DAMAGE = ["deleted", "emptied", "garbage"]


@pytest.mark.parametrize("damage", ARTIFACT_DAMAGE)
@pytest.mark.parametrize("file", ["pipeline.skops", "slmbench-task.yaml"])
def test_damaged_artifacts_are_one_clear_line(hostile_site, tmp_path, file, damage):
    site = Path(shutil.copytree(hostile_site, tmp_path / "site"))
    target = site / MIXED / "artifacts" / "tfidf-linear.seed0" / file
    if damage == "deleted":
        target.unlink()
    else:
        target.write_bytes(b"" if damage == "emptied" else b"\x00PK\x03\x04 not what it was \xff")
    result = run_cli(["predict", MIXED, "--strategy", "tfidf-linear", "inputs/good.csv"], cwd=site, kind="run folder", invalid=True)
    check(result, "tfidf-linear.seed0", file, accept=False)


def test_good_input_writes_only_the_named_output(hostile_site, tmp_path):
    site = Path(shutil.copytree(hostile_site, tmp_path / "site"))
    (site / "out").mkdir()
    argv = ["predict", MIXED, "--strategy", "tfidf-linear", "inputs/good.csv", "--output", "out/predictions.jsonl"]
    result = run_cli(argv, cwd=site, kind="cli argument", invalid=False, writes=site / "out")
    assert result.outcome == "accepted", str(result)
    assert [path.name for path in (site / "out").iterdir()] == ["predictions.jsonl"]
    assert len(_jsonl(site / "out" / "predictions.jsonl")) == 2
