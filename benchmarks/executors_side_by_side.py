"""The same sweep with the local executor and with Ray, side by side in one process, on this machine.

Both run the same trials (strategies x seeds, one task and profile) from empty output folders, one
after the other: the local executor one trial at a time with every core, Ray with ``--workers``
trials at once and ``--threads`` torch threads each. Printed (and written with ``--json``): the
wall time of each and their ratio, and each trial's accuracy under both, which should agree within
noise (deterministic strategies exactly).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/executors_side_by_side.py --data-dir ../shared/data \\
        --strategies knn-vote,embedding-classifier,few-shot,lora --seeds 0,1 --profile quick
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def run(executor: object, options: dict, output: Path) -> tuple[float, dict[str, float | None]]:
    """Wall seconds of the sweep and each trial's accuracy (None for a failed trial)."""
    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.planning import RunOptions
    from slmbench.engine.runner import run_benchmark
    from slmbench.records import load_run_folder
    from slmbench.strategy.registry import load_registry

    started = time.perf_counter()
    result = run_benchmark(RunOptions(output=str(output), **options), load_registry(), ProgressReporter(False), executor=executor)
    seconds = time.perf_counter() - started
    folder = load_run_folder(result.run_dir)
    return seconds, {trial.file: trial.record.metrics.accuracy if trial.record and trial.record.ok else None for trial in folder.trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("SLMBENCH_DATA_DIR", "../shared/data"))
    parser.add_argument("--task", default="financial_sentiment")
    parser.add_argument("--strategies", default="knn-vote,embedding-classifier,few-shot,lora")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--tuning-trials", type=int, default=1, help="option settings per strategy (1: the defaults)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per Ray trial")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.executors import LocalExecutor, RayExecutor

    options = {
        "task": args.task, "strategies": args.strategies, "profile": args.profile, "data_dir": args.data_dir,
        "seeds": [int(seed) for seed in args.seeds.split(",")], "tuning_trials": args.tuning_trials,
    }
    with tempfile.TemporaryDirectory(prefix="slmbench-executors-") as folder:
        local_seconds, local = run(LocalExecutor(ProgressReporter(False)), options, Path(folder) / "local")
        ray_started = time.perf_counter()
        executor = RayExecutor(workers=args.workers, threads_per_trial=args.threads)
        ray_start_seconds = time.perf_counter() - ray_started
        ray_seconds, parallel = run(executor, options, Path(folder) / "ray")
    ray_seconds += ray_start_seconds
    figures = {
        "cpu_count": os.cpu_count(), "options": options, "workers": args.workers, "threads_per_trial": args.threads,
        "local_seconds": round(local_seconds, 1), "ray_seconds": round(ray_seconds, 1),
        "ray_start_seconds": round(ray_start_seconds, 1), "speedup": round(local_seconds / ray_seconds, 2),
        "trials": {name: {"local": local[name], "ray": parallel.get(name)} for name in sorted(local)},
    }
    print(f"local executor: {local_seconds:,.0f} s; ray ({args.workers} workers x {args.threads} thread): "
          f"{ray_seconds:,.0f} s (of which {ray_start_seconds:.1f} s starting Ray); local / ray = {figures['speedup']:.2f}x")
    for name, accuracies in figures["trials"].items():
        print(f"  {name}: accuracy local {accuracies['local']}, ray {accuracies['ray']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
