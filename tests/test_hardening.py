"""Issue 13, example by example: careless and hostile input to every entry point.

Each test runs the CLI in-process (``cli_harness.run_cli``: stdout and stderr captured, a watchdog
against hangs, the working folder compared before and after) and checks the exit code, that the
message names the file or argument at fault, and that no traceback was printed. Cases that need a
real process (a FIFO given as the task, /dev/zero, a missing model) run the CLI as a subprocess.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import fake_strategies
import pytest
import yaml
from cli_harness import (
    FIXTURE,
    GOOD_ROWS,
    RUN,
    VALID_TASK,
    VALIDATE,
    check,
    count,
    make_workdir,
    run_cli,
    write_rows,
    write_task,
)

from slmbench import records

FAKES_SCRIPT = Path(fake_strategies.__file__)


@pytest.fixture
def wd(tmp_path: Path, monkeypatch) -> Path:
    """A working folder with ``data/data.csv`` and ``data/task.yaml`` (valid), runs going to ``out/``; no
    $SLMBENCH_DATA_DIR (the CLI rejects one that is not a folder), so data is found beside the task."""
    monkeypatch.delenv("SLMBENCH_DATA_DIR", raising=False)
    return make_workdir(tmp_path / "wd")


def _run(wd: Path, *changes: str, invalid: bool | None = True, kind: str = "cli argument"):
    """``slmbench run`` on the tiny task with ``changes`` (pairs of option and value, or flags) appended."""
    return run_cli([*RUN, *changes], cwd=wd, kind=kind, invalid=invalid, writes=wd / "out")


def _validate(wd: Path, *extra: str, invalid: bool | None = True, kind: str = "task yaml"):
    return run_cli([*VALIDATE, *extra], cwd=wd, kind=kind, invalid=invalid)


def _subprocess(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI (fake strategies registered) as a process, its memory capped so a runaway read fails fast."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    environment = {**os.environ, "PYTHONPATH": str(FAKES_SCRIPT.parent), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(FAKES_SCRIPT), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap_memory,
    )


def _count_process(result: subprocess.CompletedProcess, invalid: bool) -> None:
    traced = "Traceback" in result.stderr or "internal error" in result.stderr
    outcome = "traceback" if traced else "clean error" if result.returncode else "wrongly accepted" if invalid else "accepted"
    count(outcome, "process", invalid)


# --- tracebacks: task YAMLs -------------------------------------------------------------------

ALIAS_BOMB = "".join(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi"))
YAML_CASES = {
    "nested thousands of levels deep (flow)": ("name: " + "[" * 5000 + "]" * 5000, "nested more than"),
    "nested a thousand levels deep (block)": ("".join(" " * i + f"k{i}:\n" for i in range(1000)), "nested more than"),
    "alias bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\n" + ALIAS_BOMB + "name: *i\n", "more than 64 aliases"),
    "alias bomb within the alias limit": (
        "a: &a [x, x, x, x, x, x, x, x, x]\n" + ALIAS_BOMB[: ALIAS_BOMB.index("i:")] + "name: *h\n",
        "field 'a' is not a known key",
    ),
    "duplicate top-level key": ("name: first\nname: second\n", "duplicate key 'name'"),
    "duplicate key inside a label": ("labels:\n  - {name: a, name: b}\n", "duplicate key 'name'"),
    "integer of 5000 digits": ("split: {seed: " + "9" * 5000 + "}\n", "not a valid task file"),
    "reference value too large for a float": (
        yaml.safe_dump(VALID_TASK) + "references: [{system: s, metric: m, source: x, value: " + "9" * 400 + "}]\n",
        "references[0].value",
    ),
    "python object tag": ("name: !!python/object/apply:os.system ['echo hacked']\n", "not valid YAML"),
    "larger than 1 MiB": ("# " + "x" * (1 << 20) + "\n", "more than the 1,048,576 allowed"),
    "not UTF-8": (b"name: caf\xe9\n", "not UTF-8"),
    "NUL byte": ("name: a\x00b\n", "not valid YAML"),
}


@pytest.mark.parametrize("content, message", YAML_CASES.values(), ids=YAML_CASES.keys())
def test_malformed_task_yaml_is_one_clear_error(wd: Path, content: str | bytes, message: str) -> None:
    task = wd / "data" / "task.yaml"
    task.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = _validate(wd)
    check(result, "task.yaml", accept=False)
    assert message in result.stderr
    assert len(result.stderr) < 2000  # an alias bomb is never expanded into the message


def test_duplicate_keys_name_the_line(wd: Path) -> None:
    (wd / "data" / "task.yaml").write_text("name: fuzz\ndescription: d\nname: other\n")
    result = _validate(wd)
    check(result, "task.yaml", accept=False)
    assert "at line 3" in result.stderr and "duplicate key 'name'" in result.stderr


# --- tracebacks: markup, long names, devices --------------------------------------------------


@pytest.mark.parametrize("where", ["label value", "column name", "task file name"])
def test_rich_markup_in_input_is_printed_literally(wd: Path, where: str) -> None:
    hostile = "[red]x[bold]" if where == "task file name" else "[/red]x[bold]"
    task = "data/task.yaml"
    if where == "label value":
        write_rows(wd / "data" / "data.csv", [*GOOD_ROWS, ("one more text", hostile)])
    elif where == "column name":
        write_task(wd / "data", text_column=hostile)
    else:
        task = f"data/{hostile}.yaml"
        write_task(wd / "data", f"{hostile}.yaml", labels=["only one"])
    result = run_cli(["validate", task, "--data-dir", "data"], cwd=wd, kind="task yaml", invalid=True)
    check(result, accept=False)
    assert hostile in result.stderr


def test_data_file_name_over_255_characters(wd: Path) -> None:
    write_task(wd / "data", source={"file": "d" * 300 + ".csv"})
    result = _validate(wd)
    check(result, "File name too long", accept=False)


@pytest.mark.parametrize(
    "argument", [["validate", "v" * 300], ["run", "--task", "t" * 300 + ".yaml"], ["validate", "a\x00b.yaml"], ["report", "r" * 300]]
)
def test_names_too_long_or_with_nul_bytes(wd: Path, argument: list[str]) -> None:
    check(run_cli(argument, cwd=wd, kind="cli argument", invalid=True), accept=False)


def test_validate_dev_zero_fails_at_once(wd: Path) -> None:
    result = _subprocess(["validate", "/dev/zero"], wd)
    _count_process(result, invalid=True)
    assert result.returncode == 2 and "/dev/zero: task file is not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("output", ["a-file", "a-file/below"])
def test_output_that_is_a_file(wd: Path, output: str) -> None:
    (wd / "a-file").write_text("not a folder")
    result = run_cli([*RUN[:-3], "--output", output, "--no-progress"], cwd=wd, kind="cli argument", invalid=True)
    check(result, "--output", accept=False)


# --- tracebacks: run folders given to --resume and report -------------------------------------


@pytest.fixture
def finished_run(wd: Path) -> Path:
    """A run of ``majority`` on the tiny task, finished: ``out/fuzz/smoke``."""
    check(_run(wd, invalid=False, kind="cli argument"))
    return wd / "out" / "fuzz" / "smoke"


DAMAGED_RUN_JSON = {
    "not JSON": "{",
    "a list": "[]",
    "null": "null",
    "run_id a number": '{"run_id": 3, "task": "fuzz"}',
    "seeds a string": {"seeds": "abc"},
    "strategies a number": {"strategies": 5},
    "options a list": "options-list",
    "unknown profile": {"profile": "warp-speed"},
    "task_path to nowhere": "task-nowhere",
}


def _damage_run_json(run_dir: Path, damage: object) -> None:
    path = run_dir / "run.json"
    run = json.loads(path.read_text())
    if isinstance(damage, dict):
        run["options"].update(damage)
    elif damage == "options-list":
        run["options"] = [1, 2]
    elif damage == "task-nowhere":
        run["task_path"] = "../../../nowhere.yaml"
    else:
        path.write_text(damage)
        return
    path.write_text(json.dumps(run))


@pytest.mark.parametrize("damage", DAMAGED_RUN_JSON.values(), ids=DAMAGED_RUN_JSON.keys())
def test_resume_with_a_damaged_run_json(wd: Path, finished_run: Path, damage: object) -> None:
    _damage_run_json(finished_run, damage)
    result = run_cli(["run", "--resume", str(finished_run), "--no-progress"], cwd=wd, kind="run folder", invalid=True, writes=finished_run)
    check(result, "run.json", "nowhere.yaml", "--profile", accept=False)


def test_resume_of_a_moved_run_folder_is_refused(wd: Path, finished_run: Path) -> None:
    """Resuming writes to <output>/<task>/<run id>: a folder moved elsewhere would be resumed somewhere new."""
    moved = wd / "out" / "elsewhere" / "smoke"
    moved.parent.mkdir()
    finished_run.rename(moved)
    result = run_cli(["run", "--resume", str(moved), "--no-progress"], cwd=wd, kind="run folder", invalid=True, writes=moved)
    check(result, "--resume", accept=False)
    assert not finished_run.exists()


def test_resume_dot_from_inside_the_run_folder(wd: Path, finished_run: Path) -> None:
    (finished_run / "trials" / "majority.seed0.json").unlink()
    result = run_cli(["run", "--resume", ".", "--no-progress"], cwd=finished_run, kind="run folder", invalid=None, writes=finished_run)
    assert result.code == 0, str(result)
    assert (finished_run / "trials" / "majority.seed0.json").exists()


@pytest.mark.parametrize(
    "content",
    ["[]", "null", '"a string"', "{" * 100_000, '{"strategy": "x", "status": "ok", "metrics": {"accuracy": "high", "macro_f1": 0.5}}'],
    ids=["list", "null", "string", "deep", "string for a number"],
)
def test_report_lists_a_damaged_trial_file_and_renders(tmp_path: Path, content: str) -> None:
    run_dir = Path(shutil.copytree(FIXTURE, tmp_path / "runs" / "run_small"))
    (run_dir / "trials" / "lora.seed0.json").write_text(content)
    result = run_cli(["report", str(run_dir)], cwd=tmp_path, kind="run folder", invalid=None, writes=run_dir)
    check(result)
    assert result.code == 0
    failures = (run_dir / "report.md").read_text().split("## Failures", 1)[1]
    assert "trials/lora.seed0.json" in failures and "(unreadable)" in failures


@pytest.mark.parametrize("form", ["json", "csv"])
def test_exports_of_a_damaged_run_folder(tmp_path: Path, form: str) -> None:
    run_dir = Path(shutil.copytree(FIXTURE, tmp_path / "runs" / "run_small"))
    (run_dir / "trials" / "lora.seed0.json").write_text("[]")
    check(run_cli(["report", str(run_dir), "--format", form], cwd=tmp_path, kind="run folder", invalid=None))


def test_dollar_signs_in_labels_never_reach_mathtext(wd: Path) -> None:
    labels = ["$x^$", "a$b", "$\\frac{1}{$"]
    rows = [(f"text {i} for {label}", label) for i in range(12) for label in labels]
    write_rows(wd / "data" / "data.csv", rows)
    write_task(wd / "data", labels=labels)
    result = _run(wd, "--strategies", "majority,last-label", invalid=None, kind="data file")
    check(result)
    assert result.code == 0
    run_dir = wd / "out" / "fuzz" / "smoke"
    assert (run_dir / "per_class_f1.png").stat().st_size > 0 and (run_dir / "tradeoff_training.png").exists()


def test_a_second_ctrl_c_while_the_report_renders(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in a trial, then twice more while the report is written: the report is whole, the exit 130."""
    import slmbench.report.render

    real = slmbench.report.render.render_report

    def pressed_twice(*args, **kwargs):
        if len(args) < 4 and kwargs.get("progress") is None:  # the final report (a mid-run one gets the run's progress)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(slmbench.report.render, "render_report", pressed_twice)
    result = _run(wd, "--strategies", "majority,interrupting,last-label", invalid=None)
    assert result.code == 130 and result.outcome == "clean error", str(result)
    assert result.stderr.strip().splitlines()[-1].startswith("interrupted: run interrupted; resume with")
    run_dir = wd / "out" / "fuzz" / "smoke"
    report = (run_dir / "report.md").read_text()
    assert "cancelled" in report and report.rstrip().endswith("|")  # ends with the environment table: whole
    assert not (run_dir / "trials" / "last-label.seed0.json").exists()


def test_second_interrupt_during_the_report_alone(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import slmbench.report.render

    real = slmbench.report.render.render_report

    def pressed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(slmbench.report.render, "render_report", pressed)
    result = _run(wd, invalid=None)
    assert result.code == 130 and "Traceback" not in result.stderr
    assert (wd / "out" / "fuzz" / "smoke" / "report.md").read_text().startswith("# Decision report")


# --- wrongly accepted -------------------------------------------------------------------------

BAD_ARGUMENTS = {
    "run-id climbing out": (["--run-id", "../../x"], "--run-id"),
    "run-id absolute": (["--run-id", "/tmp/slmbench-escape"], "--run-id"),
    "run-id dot-dot": (["--run-id", ".."], "--run-id"),
    "run-id empty": (["--run-id", ""], "--run-id"),
    "strategies empty": (["--strategies", ""], "--strategies"),
    "strategies only commas": (["--strategies", " , ,"], "--strategies"),
    "train-sizes larger than the data": (["--train-sizes", "100000"], "--train-sizes"),
    "train-sizes zero": (["--train-sizes", "0"], "--train-sizes"),
    "train-sizes not a number": (["--train-sizes", "²"], "--train-sizes"),
    "seeds above 2**32": (["--seeds", str(2**40)], "--seeds"),
    "device bogus": (["--device", "bogus"], "--device"),
    "trial-timeout negative": (["--trial-timeout", "-1"], "--trial-timeout"),
    "trial-timeout zero": (["--trial-timeout", "0"], "--trial-timeout"),
    "trial-timeout nan": (["--trial-timeout", "nan"], "--trial-timeout"),
    "embedding model folder missing": (["--embedding-model", "/no/such/model"], "--embedding-model"),
    "model folder missing": (["--model", "./no-such-model"], "--model"),
    "unknown tracker": (["--track", "nope"], "--track"),
    "data-dir a file": (["--data-dir", "data/data.csv"], "--data-dir"),
    "set without a value": (["--set", "majority"], "--set"),
    "set an unknown option": (["--set", "majority.nope=1"], "nope"),
}


@pytest.mark.parametrize("changes, culprit", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_run_arguments_are_refused_before_anything_runs(wd: Path, changes: list[str], culprit: str) -> None:
    result = _run(wd, *changes)
    check(result, culprit, accept=False)
    assert not (wd / "out").exists()
    assert not Path("/tmp/slmbench-escape").exists()


def test_every_trial_failed_exits_3_and_says_so(wd: Path) -> None:
    result = _run(wd, "--strategies", "exploding,wrong-length", invalid=None)
    assert result.code == 3, str(result)
    assert result.stderr.strip().splitlines()[-1] == "every trial failed: 2 of 2 trials failed: see the report's Failures"


def test_some_trials_failed_exits_1_and_says_so_last(wd: Path) -> None:
    result = _run(wd, "--strategies", "majority,exploding", invalid=None)
    assert result.code == 1, str(result)
    assert result.stderr.strip().splitlines()[-1].startswith("finished with failures: 1 of 2 trials run now failed")


def test_a_missing_hub_embedding_model_fails_every_trial(wd: Path) -> None:
    """A well-formed hub id that cannot be loaded (offline, or no such model): each trial fails, exit 3."""
    result = _subprocess(
        [
            *RUN[:5],
            "--strategies",
            "embedding-classifier",
            "--profile",
            "smoke",
            "--output",
            "out",
            "--no-progress",
            "--embedding-model",
            "no-such-org/no-such-model",
        ],
        wd,
    )
    _count_process(result, invalid=True)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "every trial failed" in result.stderr


@pytest.mark.parametrize("fmt", [".jsonl", ".parquet"])
@pytest.mark.parametrize("cell", [{"an": "object"}, ["a", "list"], 42], ids=["object", "list", "number"])
def test_texts_that_are_not_text(wd: Path, fmt: str, cell: object) -> None:
    rows = [*GOOD_ROWS, (cell, "a")]
    if fmt == ".parquet":  # a Parquet column has one type: every text is such a cell
        rows = [(cell, label) for _, label in GOOD_ROWS]
    write_rows(wd / "data" / f"data{fmt}", rows)
    write_task(wd / "data", source={"file": f"data{fmt}"})
    result = _validate(wd, kind="data file")
    check(result, "column 'text'", accept=False)
    assert "not text" in result.stderr


def test_labels_that_are_objects(wd: Path) -> None:
    write_rows(wd / "data" / "data.jsonl", [*GOOD_ROWS, ("a text", ["a"])])
    write_task(wd / "data", source={"file": "data.jsonl"}, labels=["a", "b", "c", "['a']"])
    check(_validate(wd, kind="data file"), "column 'label'", accept=False)


def test_deduplication_that_empties_the_train_split(wd: Path) -> None:
    rows = [(f"text {i} of {label}", label) for label in ("a", "b", "c") for i in range(5) for _ in range(40)]
    write_rows(wd / "data" / "data.csv", rows)
    result = _validate(wd, kind="data file")
    check(result, "task.yaml", accept=False)
    assert "split is empty once duplicate texts are removed" in result.stderr


@pytest.mark.parametrize("layout", ["empty folder", "empty trials folder", "missing folder", "a file"])
def test_report_on_something_that_is_not_a_run_folder(tmp_path: Path, layout: str) -> None:
    target = tmp_path / "target"
    if layout == "a file":
        target.write_text("x")
    elif layout != "missing folder":
        (target / "trials").mkdir(parents=True) if layout == "empty trials folder" else target.mkdir()
    result = run_cli(["report", str(target)], cwd=tmp_path, kind="run folder", invalid=True)
    check(result, str(target), accept=False)


@pytest.mark.parametrize(
    "arguments", [["--format", "md", "--output", "x.md"], ["--format", "json", "--output", "."]], ids=["md to a file", "json to a folder"]
)
def test_report_output_that_cannot_be_honoured(tmp_path: Path, arguments: list[str]) -> None:
    run_dir = Path(shutil.copytree(FIXTURE, tmp_path / "run_small"))
    check(run_cli(["report", str(run_dir), *arguments], cwd=tmp_path, kind="cli argument", invalid=True), "--output", accept=False)


# --- hangs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_task_path_that_is_a_fifo_fails_at_once(wd: Path, command: str) -> None:
    os.mkfifo(wd / "task.yaml")
    args = ["validate", "task.yaml"] if command == "validate" else ["run", "--task", "task.yaml", "--profile", "smoke"]
    result = _subprocess(args, wd, timeout=60)
    _count_process(result, invalid=True)
    assert result.returncode == 2 and "task.yaml: task file is not a regular file" in result.stderr


def test_a_data_file_that_is_a_fifo(wd: Path) -> None:
    (wd / "data" / "data.csv").unlink()
    os.mkfifo(wd / "data" / "data.csv")
    check(_validate(wd, kind="data file"), "data.csv: data file is not a regular file", accept=False)


@pytest.mark.parametrize("name", ["run.json", "test_texts.json", "trials/lora.seed0.json"])
def test_run_folder_files_that_are_fifos(tmp_path: Path, name: str) -> None:
    run_dir = Path(shutil.copytree(FIXTURE, tmp_path / "run_small"))
    (run_dir / name).unlink()
    os.mkfifo(run_dir / name)
    result = run_cli(["report", str(run_dir)], cwd=tmp_path, kind="run folder", invalid=name == "run.json", writes=run_dir)
    check(result, "run.json")


# --- reading outside the data folder ----------------------------------------------------------

SECRET = "hunter2-secret-line"


@pytest.fixture
def secret(wd: Path) -> Path:
    """A data file outside ``data/`` whose every line is a secret (and a valid table otherwise)."""
    rows = [(f"{SECRET} {i} {label}", label) for i in range(12) for label in ("a", "b", "c")]
    return write_rows(wd / "elsewhere.csv", rows)


@pytest.mark.parametrize("how", ["absolute", "dot-dot", "symbolic link"])
def test_a_data_file_outside_the_data_folder_needs_the_flag(wd: Path, secret: Path, how: str) -> None:
    file = {"absolute": str(secret), "dot-dot": "../elsewhere.csv", "symbolic link": "link.csv"}[how]
    if how == "symbolic link":
        (wd / "data" / "link.csv").symlink_to(secret)
    write_task(wd / "data", source={"file": file})
    result = _validate(wd, kind="data file")
    check(result, "source.file", accept=False)
    assert "--allow-outside-data-dir" in result.stderr and SECRET not in result.stderr
    allowed = _validate(wd, "--allow-outside-data-dir", invalid=None, kind="data file")
    assert allowed.code == 0, str(allowed)


def test_a_run_reads_outside_only_with_the_flag_and_resume_asks_again(wd: Path, secret: Path) -> None:
    write_task(wd / "data", source={"file": str(secret)})
    check(_run(wd, kind="data file"), "source.file", accept=False)
    assert not (wd / "out").exists()
    check(_run(wd, "--allow-outside-data-dir", invalid=None, kind="data file"))
    run_dir = wd / "out" / "fuzz" / "smoke"
    assert "allow_outside_data_dir" not in (run_dir / "run.json").read_text()
    (run_dir / "trials" / "majority.seed0.json").unlink()
    resumed = run_cli(["run", "--resume", str(run_dir), "--no-progress"], cwd=wd, kind="run folder", invalid=True, writes=run_dir)
    check(resumed, "source.file", accept=False)


@pytest.mark.parametrize(
    "hub",
    [{"path": "folder"}, {"path": "csv", "data_dir": "/etc"}, {"path": "../x/y"}],
    ids=["local folder", "packaged builder", "dot-dot"],
)
def test_a_hub_path_that_reads_local_files_needs_the_flag(wd: Path, hub: dict) -> None:
    (wd / "folder").mkdir()
    write_task(wd / "data", source={"file": "missing.csv", "hub": hub})
    check(_validate(wd, kind="task yaml"), "source.hub.path", accept=False)


def test_a_task_file_that_is_any_text_file_is_not_echoed(wd: Path) -> None:
    (wd / "notes.txt").write_text(f"{SECRET}\n{SECRET} again\n")
    result = run_cli(["validate", "notes.txt"], cwd=wd, kind="task yaml", invalid=True)
    check(result, "notes.txt", accept=False)
    assert SECRET not in result.stderr


# --- data safety ------------------------------------------------------------------------------


def test_records_are_fsynced_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = []
    real = os.fsync
    monkeypatch.setattr(records.store.os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode), real(fd))[1])
    records.write_json(tmp_path / "trial.json", {"a": 1})
    assert len(synced) == 2 and any(os.path.stat.S_ISDIR(mode) for mode in synced)


@pytest.mark.parametrize("failure", ["encoding", "interrupt"])
def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    target = tmp_path / "trial.json"
    records.write_json(target, {"kept": True})
    if failure == "encoding":
        with pytest.raises(UnicodeEncodeError):
            records.write_text(target, "a lone surrogate \ud800")
    else:

        def interrupted(source, destination):
            raise KeyboardInterrupt

        monkeypatch.setattr(records.store.os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            records.write_json(target, {"kept": False})
    assert [path.name for path in tmp_path.iterdir()] == ["trial.json"]
    assert json.loads(target.read_text()) == {"kept": True}


# --- printed names never read as markup -------------------------------------------------------


def test_progress_bar_descriptions_are_not_markup() -> None:
    from slmbench.common.progress import ProgressReporter

    with ProgressReporter(enabled=True).task("lora[/red] [bold]x", 2) as advance:
        advance(2)


def test_summary_table_with_a_hostile_trial_name_in_the_run_folder(wd: Path, finished_run: Path) -> None:
    trial = json.loads((finished_run / "trials" / "majority.seed0.json").read_text())
    trial["variant"] = "[/red]\x1b[2Jname"
    (finished_run / "trials" / "other.seed0.json").write_text(json.dumps(trial))
    result = _run(wd, invalid=None)
    check(result)
    assert "\x1b" not in result.stderr


def test_valid_task_is_still_accepted(wd: Path) -> None:
    result = _validate(wd, invalid=None)
    assert result.code == 0 and "task fuzz" in result.stdout, str(result)
