"""What a sweep costs, computed from the measured trials of run folders (no model runs).

For every strategy in the given run folders (one per task), a trial's cost is its measured wall time,
start to record: loading, option search, training, prediction and checks (the mean over the seeds
present; train + predict seconds for records without timestamps). A sweep of ``--seeds`` seeds and the learning
curve's ``--train-sizes`` repeats every trial once per seed and size; a learning-curve point is
estimated at the whole-split cost scaled by its share of the train split (fitting costs grow with the
examples; measured points are used where the run folder has them). The sweep's wall time is then
given for one worker (the local executor) and for a Ray cluster of K workers, each as fast as this
machine times ``--speedup`` (e.g. a GPU node's measured speed-up over this CPU), scheduling the
longest trials first (LPT), which is what a pool of workers pulling from one queue achieves.

    .venv/bin/python benchmarks/sweep_cost.py results/financial_sentiment/quick results/bbc/quick \\
        --seeds 3 --train-sizes 16,64,256 --workers 1,2,4,8,16
"""

from __future__ import annotations

import argparse
import heapq
import statistics
from pathlib import Path


def trial_seconds(run_dir: Path) -> tuple[dict[str, float], dict[tuple[str, int], float], int, set[str]]:
    """Per variant: mean trial seconds on the whole split; per (variant, size) where measured; the
    train size; the variants that learn from no train example (run once per seed, whatever the sizes)."""
    from slmbench.records import TrialRecord
    from slmbench.report.summary import load_summary

    def seconds(trial: TrialRecord) -> float:
        return trial.wall_seconds or (trial.cost.train_seconds or 0.0) + (trial.cost.predict_seconds or 0.0)

    summary = load_summary(run_dir)
    whole = {entry.name: statistics.fmean(map(seconds, entry.trials)) for entry in summary.entries}
    points: dict[tuple[str, int], list[float]] = {}
    for record in summary.trials:
        if record.ok and record.train_size is not None:
            points.setdefault((record.name, record.train_size), []).append(seconds(record))
    n_train = summary.run.splits.sizes.get("train", 0) if summary.run else 0
    flat = {entry.name for entry in summary.entries if not entry.first.learns_from_train}
    return whole, {key: statistics.fmean(values) for key, values in points.items()}, n_train, flat


def makespan(durations: list[float], workers: int) -> float:
    """Wall time of ``durations`` on ``workers`` identical workers, longest first (LPT)."""
    loads = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + duration)
    return max(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-sizes", default="16,64,256", help="learning-curve sizes besides the whole split")
    parser.add_argument("--workers", default="1,2,4,8,16", help="cluster sizes to estimate")
    parser.add_argument("--speedup", type=float, default=1.0, help="each worker's speed relative to this machine")
    args = parser.parse_args()
    sizes = [int(size) for size in args.train_sizes.split(",") if size]

    durations: list[float] = []
    for run_dir in args.run_dirs:
        whole, measured, n_train, flat = trial_seconds(run_dir)
        for name, seconds in whole.items():
            curve = [] if name in flat else [measured.get((name, size), seconds * min(1.0, size / max(n_train, 1))) for size in sizes]
            per_seed = [seconds, *curve]
            durations += [s / args.speedup for s in per_seed for _ in range(args.seeds)]
        print(f"{run_dir}: {len(whole)} strategies, {sum(whole.values()) / 60:,.1f} min for one seed on the whole split")
    print(f"sweep: {len(durations)} trials ({args.seeds} seeds x (whole split + {len(sizes)} train sizes) x strategies x "
          f"{len(args.run_dirs)} tasks), {sum(durations) / 3600:,.1f} h of trial time")
    print("| workers | wall time (h) | longest trial (min) |")
    print("|---|---|---|")
    for workers in (int(w) for w in args.workers.split(",")):
        print(f"| {workers} | {makespan(durations, workers) / 3600:,.2f} | {max(durations) / 60:,.1f} |")


if __name__ == "__main__":
    main()
