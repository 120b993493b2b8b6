"""The quick decision timed for an earlier commit and for today's code, one after the other on this machine.

Both sides run the same command (``slmbench run --task financial_sentiment --strategies all --profile
quick --seeds 0``: every built-in strategy, the profile's default option search) from an empty
output folder, each as its own process with the same Python environment: the baseline from a
snapshot of ``--baseline`` (``git archive``, default ``23551bc``), the candidate from ``--candidate``
(a commit, snapshotted when its side starts, or ``.``: this working tree). Printed (and written with
``--json``): each side's wall time, their ratio, each side's recommendation and whether they agree,
and where each side's time went (training, the timed test prediction, the rest of each trial, and
what the run did outside its trials: start-up, deployment and export checks, the report).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/decision_time.py --data-dir ../shared/data \\
        --json benchmarks/results/decision_time.json

``--small`` (``SMALL``) checks in about a minute that it runs (``tests/test_benchmarks.py``): the
strategy that loads no model, on the smoke profile, with this commit as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASELINE = "23551bc"
"""The commit of the last measured quick decision before the live report and contender-only checks."""
CLI = "import sys; from slmbench.cli import main; sys.exit(main(sys.argv[1:]))"
"""How each side's code is started: its own ``slmbench.cli.main`` (the same console-script entry at both commits)."""
RECOMMENDATION = re.compile(r"\*\*Use `([^`]+)`\*\*")
"""The report's verdict line (``**Use `name`**``), the same at both commits."""

SMALL = {"strategies": "tfidf-linear", "profile": "smoke", "baseline": "HEAD"}
"""``--small``: the strategy that loads no model on the smoke profile's tiny splits; baseline: this commit."""


def snapshot(ref: str, into: Path) -> tuple[Path, str]:
    """The tree of commit ``ref`` written to ``into`` (``.``: this working tree, used in place); its commit id."""
    if ref == ".":
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        return REPO, f"{commit} + working tree"
    commit = subprocess.run(["git", "rev-parse", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into, commit


def import_path(tree: Path, shim: Path) -> str:
    """``PYTHONPATH`` that makes ``tree``'s code the one imported: ``slmbench`` from its root, and the
    built-in plugins and tasks (``slmbench_plugins``, ``slmbench_tasks``, the entry points' module
    names at both commits) through links to its ``plugins/`` and ``tasks/``."""
    shim.mkdir(parents=True, exist_ok=True)
    for name, folder in (("slmbench_plugins", "plugins"), ("slmbench_tasks", "tasks")):
        (shim / name).symlink_to(tree / folder, target_is_directory=True)
    return os.pathsep.join([str(tree), str(shim)])


def run_side(label: str, ref: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """One side: its code snapshotted, the decision run from an empty folder and timed; its figures."""
    tree, commit = snapshot(ref, scratch / label / "code")
    output = scratch / label / "runs"
    command = [
        *("run", "--task", args.task, "--strategies", args.strategies, "--profile", args.profile),
        *("--seeds", "0", "--data-dir", str(Path(args.data_dir).resolve()), "--output", str(output), "--no-progress"),
    ]
    env = {**os.environ, "PYTHONPATH": import_path(tree, scratch / label / "shim"), "HF_HUB_OFFLINE": "1"}
    print(f"{label} ({commit[:12]}): slmbench {' '.join(command)}", flush=True)
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", CLI, *command], env=env, cwd=scratch, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    run_dirs = sorted(path.parent for path in output.glob("*/*/run.json"))
    run_dir = run_dirs[0] if run_dirs else None
    report = run_dir / "report.md" if run_dir else None
    verdict = RECOMMENDATION.search(report.read_text(encoding="utf-8")) if report and report.is_file() else None
    figures = {
        "label": label,
        "ref": ref,
        "commit": commit,
        "exit_code": finished.returncode,
        "wall_seconds": round(seconds, 1),
        "recommendation": verdict.group(1) if verdict else None,
        **time_spent(run_dir, seconds),
    }
    if finished.returncode != 0:
        figures["stderr_tail"] = finished.stderr[-3000:]
    return figures


def time_spent(run_dir: Path | None, wall: float) -> dict[str, Any]:
    """Where a side's wall time went, from its trial records (fields alike at both commits): each trial's
    training (its option search included), timed test prediction and the rest of the trial (loading,
    single requests, in-trial deployment checks, saving); and the run outside its trials. A combining
    trial (the ensemble) records its members' costs as its own: only its wall time counts, as the rest."""
    trials: dict[str, dict[str, Any]] = {}
    for file in sorted(run_dir.glob("trials/*.json")) if run_dir else []:
        record = json.loads(file.read_text(encoding="utf-8"))
        cost = record.get("cost") or {}
        started, ended = (datetime.fromisoformat(record[key]) for key in ("started_at", "finished_at"))
        trial_seconds = (ended - started).total_seconds()
        combines = bool((record.get("config") or {}).get("inputs"))  # its costs are its members'
        train, predict = (0.0, 0.0) if combines else (cost.get("train_seconds") or 0.0, cost.get("predict_seconds") or 0.0)
        checks = [check.get("seconds") for check in record.get("deployment") or []]
        trials[file.stem] = {
            "status": record.get("status"),
            "accuracy": (record.get("metrics") or {}).get("accuracy"),
            "trial_seconds": trial_seconds,
            "train_seconds": round(train, 1),
            "predict_seconds": round(predict, 1),
            "rest_of_trial_seconds": round(trial_seconds - train - predict, 1),
            "deployment_copies": len(checks),
            "deployment_check_seconds": round(sum(checks), 1) if checks and None not in checks else None,
        }
    in_trials = sum(trial["trial_seconds"] for trial in trials.values())
    parts = ("train_seconds", "predict_seconds", "rest_of_trial_seconds")
    totals = {key: round(sum(trial[key] for trial in trials.values()), 1) for key in parts}
    return {"trials": trials, "totals": {**totals, "outside_trials_seconds": round(wall - in_trials, 1)}}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("SLMBENCH_DATA_DIR", "../shared/data"))
    parser.add_argument("--task", default="financial_sentiment", help="task YAML or registered name")
    parser.add_argument("--strategies", default="all")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--baseline", default=BASELINE, help="the earlier commit (default %(default)s)")
    parser.add_argument("--candidate", default=".", help="today's code: a commit, or . for this working tree (default)")
    parser.add_argument("--small", action="store_true", help=f"a quick check that it runs: {SMALL}")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.small:  # the small values, unless given
        parser.set_defaults(**SMALL)
        args = parser.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run both sides, baseline first; returns the figures (also written to ``--json``)."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="slmbench-decision-time-") as folder:
        baseline = run_side("baseline", args.baseline, args, Path(folder))
        candidate = run_side("candidate", args.candidate, args, Path(folder))
    figures = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "command": f"slmbench run --task {args.task} --strategies {args.strategies} --profile {args.profile} --seeds 0",
        "baseline": baseline,
        "candidate": candidate,
        "wall_time_ratio": round(candidate["wall_seconds"] / baseline["wall_seconds"], 3),
        "same_recommendation": baseline["recommendation"] is not None and baseline["recommendation"] == candidate["recommendation"],
    }
    for side in (baseline, candidate):
        totals = side["totals"]
        print(
            f"{side['label']} {side['commit'][:12]}: {side['wall_seconds']:,.0f} s (exit {side['exit_code']}), "
            f"recommends {side['recommendation']}; training {totals['train_seconds']:,.0f} s, test prediction "
            f"{totals['predict_seconds']:,.0f} s, rest of trials {totals['rest_of_trial_seconds']:,.0f} s, "
            f"outside trials {totals['outside_trials_seconds']:,.0f} s"
        )
    print(f"candidate / baseline wall time: {figures['wall_time_ratio']:.3f}; same recommendation: {figures['same_recommendation']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
