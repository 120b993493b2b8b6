"""The same sweep with the local executor and with Ray, side by side in one process, on this machine.

Both run the same trials (strategies x seeds, one task and profile) from empty output folders, one
after the other: the local executor one trial at a time with every core, Ray with ``--workers``
trials at once and ``--threads`` torch threads each. Printed (and written with ``--json``): the
wall time of each and their ratio, and each trial's accuracy under both, which should agree within
noise (deterministic strategies exactly).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/executors_side_by_side.py --data-dir ../shared/data \\
        --strategies knn-vote,embedding-classifier,few-shot,lora --seeds 0,1 --profile quick

``--small`` (``SMALL``) checks in well under a minute that it runs (``tests/test_benchmarks.py``)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/executors_side_by_side.py --data-dir ../shared/data --small --json /tmp/executors.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

"""The built-in task YAMLs."""


def run(executor: object, options: dict, output: Path) -> tuple[float, dict[str, float | None]]:
    """Wall seconds of the sweep and each trial's accuracy (None for a failed trial)."""
    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.run_options import RunOptions
    from slmbench.engine.runner import run_benchmark
    from slmbench.records import load_run_folder
    from slmbench.strategy.registry import load_registry

    started = time.perf_counter()
    result = run_benchmark(RunOptions(output=str(output), **options), load_registry(), ProgressReporter(False), executor=executor)
    seconds = time.perf_counter() - started
    folder = load_run_folder(result.run_dir)
    return seconds, {
        trial.file: trial.record.metrics.accuracy if trial.record and trial.record.ok and trial.record.metrics else None
        for trial in folder.trials
    }


SMALL = {"strategies": "tfidf-linear", "seeds": "0,1", "profile": "smoke", "workers": 2, "threads": 1}
"""``--small``: the one strategy that loads no model x two seeds on the smoke profile's tiny splits (a
check that both executors run and agree; Ray's start-up dominates the times). With knn-vote added
(``--strategies tfidf-linear,knn-vote``) every Ray worker loads the embedding model: minutes, not seconds."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("SLMBENCH_DATA_DIR", "../shared/data"))
    parser.add_argument("--task", default="financial_sentiment", help="task YAML or registered name")
    parser.add_argument("--strategies", default="knn-vote,embedding-classifier,few-shot,lora")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--tuning-trials", type=int, default=1, help="option settings per strategy (1: the defaults)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per Ray trial")
    parser.add_argument("--small", action="store_true", help=f"a quick check that it runs: {SMALL}")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.small:  # the small values, unless given
        parser.set_defaults(**SMALL)
        args = parser.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the figures (also written to ``--json``)."""
    args = parse_args(argv)

    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.executors import LocalExecutor, RayExecutor

    options = {
        "task": args.task,
        "strategies": args.strategies,
        "profile": args.profile,
        "data_dir": args.data_dir,
        "seeds": [int(seed) for seed in args.seeds.split(",")],
        "tuning_trials": args.tuning_trials,
    }
    with tempfile.TemporaryDirectory(prefix="slmbench-executors-") as folder:
        local_seconds, local = run(LocalExecutor(ProgressReporter(False)), options, Path(folder) / "local")
        ray_started = time.perf_counter()
        executor = RayExecutor(workers=args.workers, threads_per_trial=args.threads)
        ray_start_seconds = time.perf_counter() - ray_started
        ray_seconds, parallel = run(executor, options, Path(folder) / "ray")
    ray_seconds += ray_start_seconds
    figures = {
        "cpu_count": os.cpu_count(),
        "options": options,
        "workers": args.workers,
        "threads_per_trial": args.threads,
        "local_seconds": round(local_seconds, 1),
        "ray_seconds": round(ray_seconds, 1),
        "ray_start_seconds": round(ray_start_seconds, 1),
        "speedup": round(local_seconds / ray_seconds, 2),
        "trials": {name: {"local": local[name], "ray": parallel.get(name)} for name in sorted(local)},
    }
    print(
        f"local executor: {local_seconds:,.0f} s; ray ({args.workers} workers x {args.threads} thread): "
        f"{ray_seconds:,.0f} s (of which {ray_start_seconds:.1f} s starting Ray); local / ray = {figures['speedup']:.2f}x"
    )
    for name, accuracies in figures["trials"].items():
        print(f"  {name}: accuracy local {accuracies['local']}, ray {accuracies['ray']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
