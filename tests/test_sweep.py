"""Sweep files and --dry-run: every combination of tasks, strategies, option grids and seeds is one trial."""

from __future__ import annotations

import json
from pathlib import Path

import fake_strategies
import pytest
import yaml

from slmbench.cli.main import main
from slmbench.engine.run_options import RunError
from slmbench.engine.sweep import read_sweep
from slmbench.testing import toy_task_files


def _run(*args: str) -> int:
    return main(list(args), extra_plugins={"fake-strategies": fake_strategies.plugin()})


def _sweep(tmp_path: Path, **fields) -> Path:
    """A sweep file over the toy task (written to ``tmp_path/task``), runs going to ``tmp_path/runs``."""
    task = toy_task_files(tmp_path / "task")
    sweep = {
        "tasks": [str(task)],
        "strategies": ["majority", "knn-vote"],
        "options": {"knn-vote": {"k": [1, 3]}},
        "seeds": [0, 1],
        "profile": "smoke",
        "data_dir": str(task.parent),
        "output": "runs",
        **fields,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_dry_run_lists_every_combination_and_what_is_done(tmp_path, capsys):
    path = _sweep(tmp_path, strategies=["majority", "last-label"], options={})
    assert _run("run", "--config", str(path), "--dry-run") == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert sorted(key for _, _, key in listed) == ["last-label.seed0", "last-label.seed1", "majority.seed0", "majority.seed1"]
    assert {status for status, _, _ in listed} == {"to run"} and not (tmp_path / "runs").exists()  # nothing written

    assert _run("run", "--config", str(path), "--strategies", "majority", "--no-progress") == 0
    assert _run("run", "--config", str(path), "--dry-run") == 0
    status = {key: state for state, _, key in (line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line)}
    assert status == {"majority.seed0": "done", "majority.seed1": "done", "last-label.seed0": "to run", "last-label.seed1": "to run"}


def test_an_option_grid_is_a_variant_per_setting(tmp_path, capsys):
    path = _sweep(tmp_path, strategies=["knn-vote"], seeds=[0])
    assert _run("run", "--config", str(path), "--dry-run") == 0
    keys = sorted(line.split("\t")[2] for line in capsys.readouterr().out.splitlines())
    assert keys == ["knn-vote[k=1].seed0", "knn-vote[k=3].seed0"]


def test_command_line_arguments_override_the_sweep_file(tmp_path, capsys):
    path = _sweep(tmp_path, strategies=["majority"], options={})
    assert _run("run", "--config", str(path), "--seeds", "5", "--dry-run") == 0
    assert [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()] == ["majority.seed5"]


def test_a_sweep_over_two_tasks_writes_two_runs_and_a_comparison(tmp_path):
    tasks = [toy_task_files(tmp_path / "task"), toy_task_files(tmp_path / "other", name="toy-other")]  # the same rows, two names
    path = _sweep(tmp_path, tasks=[str(task) for task in tasks], strategies=["majority", "last-label"], options={}, seeds=[0])
    assert _run("run", "--config", str(path), "--no-progress") == 0
    output = tmp_path / "runs"  # relative to the sweep file
    for task in ("toy-sentiment", "toy-other"):
        assert json.loads((output / task / "smoke" / "run.json").read_text())["task"] == task
    comparison = (output / "comparison.md").read_text()
    assert "| strategy | toy-sentiment/smoke | toy-other/smoke | mean rank |" in comparison


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"tasks": []}, "field 'tasks'"),
        ({"tasks": ["x"], "seeds": [-1]}, "field 'seeds'"),
        ({"tasks": ["x"], "strategis": ["a"]}, "field 'strategis'"),
        ({"tasks": ["x"], "executor": {"type": "spark"}}, "field 'executor.type'"),
        (["a list"], "a sweep file is a mapping"),
    ],
)
def test_a_bad_sweep_file_names_the_file_and_field(tmp_path, content, problem):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(RunError, match=problem) as error:
        read_sweep(path)
    assert str(error.value).startswith(str(path))


def _sweep_cost_module():
    """benchmarks/sweep_cost.py, which is a script, not part of the package."""
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "sweep_cost.py"
    spec = importlib.util.spec_from_file_location("sweep_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_cost_schedules_the_longest_trials_first() -> None:
    makespan = _sweep_cost_module().makespan
    assert makespan([5, 4, 3, 3, 3], 2) == 10  # LPT: {5, 3} and {4, 3, 3}; the optimum 9 needs a search
    assert makespan([1.0] * 6, 3) == 2.0
    assert makespan([10, 1, 1], 8) == 10


def test_sweep_cost_reads_trial_wall_time_from_a_run_folder() -> None:
    whole, measured, n_train, flat = _sweep_cost_module().trial_seconds(Path(__file__).parent / "fixtures" / "run_small")
    assert whole == {"lora": 423.0, "embedding-classifier": 5.0, "zero-shot": 25.0}  # started_at to finished_at
    assert (measured, n_train, flat) == ({}, 280, set())
