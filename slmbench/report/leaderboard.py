"""The leaderboard (quality with confidence intervals, significance against the leader, costs) and the
trade-off figures of test accuracy against training time and latency, with their Pareto fronts."""

from __future__ import annotations

from slmbench.common.text import plural
from slmbench.report import markdown as md
from slmbench.report import stats
from slmbench.report.markdown import MISSING, code, metric, number, table, text
from slmbench.report.recommend import SIGNIFICANCE, difference_p
from slmbench.report.summary import Entry, Summary

BOOTSTRAP_RESAMPLES = 1000


def _interval(entry: Entry, metric_function: stats.Metric, seed: int) -> tuple[float, float] | None:
    rows = entry.predicted_by_seed()
    if not entry.gold or any(len(row) != len(entry.gold) for row in rows):
        return None
    return stats.seed_bootstrap_ci(entry.gold, rows, metric_function, BOOTSTRAP_RESAMPLES, seed=seed)


def _spread(entry: Entry) -> str:
    if entry.accuracy_sd is None:
        return MISSING
    return f"±{entry.accuracy_sd:.3f}; {min(entry.accuracies):.3f}–{max(entry.accuracies):.3f}"


def _single_request(entry: Entry) -> str:
    latencies = [trial.cost.single_request for trial in entry.trials if trial.cost.single_request]
    if not latencies:
        return MISSING
    p50 = sum(latency.p50_ms for latency in latencies) / len(latencies)
    p95 = sum(latency.p95_ms for latency in latencies) / len(latencies)
    return f"{number(p50)} / {number(p95)}"


def _cost_cells(entry: Entry) -> list[str]:
    return [
        number(entry.cost("train_seconds")),
        number(entry.cost("predict_seconds")),
        number(entry.cost("latency_ms_per_example")),
        _single_request(entry),
        number(entry.cost("throughput_examples_per_second")),
        number(entry.cost("peak_memory_mb")),
        md.count(entry.cost("trainable_params")),
        md.count(entry.cost("total_params")),
        md.size(entry.cost("artifact_bytes")),
    ]


def leaderboard_section(summary: Summary) -> str:
    """The leaderboard table, best first, with the majority-class floor and how it was measured."""
    ranked = summary.entries
    if not ranked:
        return ""
    seed = min(summary.run.seeds) if summary.run and summary.run.seeds else 0
    f1_metric = stats.macro_f1(len(summary.labels))
    several = any(len(entry.trials) > 1 for entry in ranked)
    with_tokens = any(entry.mean_of("prompt_tokens_per_example") is not None for entry in ranked)
    leader = ranked[0]
    test_name = "p vs #1 (Holm)" if several else "McNemar p vs #1 (Holm)"
    raw = [difference_p(leader, entry) for entry in ranked[1:]]
    adjusted = stats.holm(raw)
    headers = [
        "#",
        "strategy",
        "family",
        "accuracy (95% CI)",
        *(["accuracy across seeds (sd; min–max)"] if several else []),
        "macro-F1 (95% CI)",
        test_name,
        "train (s)",
        "predict (s)",
        "latency (ms/example)",
        "single request p50 / p95 (ms)",
        "throughput (examples/s)",
        "peak memory (MiB)",
        "trainable params",
        "total params",
        "artifact size",
    ] + (["prompt tokens/example"] if with_tokens else [])
    rows = [
        [
            rank,
            text(entry.name),
            text(entry.family or MISSING),
            md.interval(entry.accuracy, _interval(entry, stats.accuracy, seed)),
            *([_spread(entry)] if several else []),
            md.interval(entry.macro_f1, _interval(entry, f1_metric, seed)),
            MISSING if rank == 1 else md.p_value(adjusted[rank - 2]),
            *_cost_cells(entry),
            *([number(entry.mean_of("prompt_tokens_per_example"))] if with_tokens else []),
        ]
        for rank, entry in enumerate(ranked, 1)
    ]
    if summary.floors is not None:
        floor = summary.floors
        cells = [
            "",
            f"*floor: always {text(floor.majority_label)}*",
            MISSING,
            metric(floor.accuracy),
            *([MISSING] if several else []),
            metric(floor.macro_f1),
        ]
        rows.append([*cells, *[MISSING] * (len(headers) - len(cells))])  # as many cells as the header
    return "\n\n".join(
        ["## Leaderboard", table(headers, rows), _method_note(summary, several, seed, leader, sum(p is not None for p in raw))]
    )


def _method_note(summary: Summary, several: bool, seed: int, leader: Entry, comparisons: int) -> str:
    """How the leaderboard's intervals and p-values (``comparisons`` of them, Holm-adjusted) were computed and
    what its columns mean."""
    if several:
        how = (
            "Accuracies are means over seeds. 95% confidence intervals: percentile bootstrap over the seeds and the test examples "
            f"together ({BOOTSTRAP_RESAMPLES:,} resamples, seed {seed}). p vs #1: paired bootstrap over the seeds both share and the "
            f"test examples (McNemar's exact test where they share one seed)"
        )
    else:
        how = (
            f"95% confidence intervals: percentile bootstrap over the test examples ({BOOTSTRAP_RESAMPLES:,} resamples, "
            f"seed {seed}). McNemar p: exact two-sided test on the test examples where exactly one of the strategy and "
            f"{code(leader.name)} (#1) is right"
        )
    adjusted = (
        f"; the p-values are adjusted for the {plural(comparisons, 'comparison')} with #1 by Holm's step-down method, so "
        f"p < {SIGNIFICANCE} means a strategy is less accurate than #1 beyond chance even though all were tested at once. "
        "(The recommendation's tie test compares one pair and is not adjusted: an adjustment would make more strategies "
        "look tied.)"
        if comparisons
        else "."
    )
    note = (
        f"Sorted by test accuracy. {how}{adjusted} Latency is the prediction time per test example in a batch run; "
        "a single request is one text per call (a warm service answering one user at a time); peak memory includes the "
        "shared models."
    )
    if summary.floors is not None:
        note += (
            f" The floor row is no strategy: it always answers the train split's most frequent label "
            f"({text(summary.floors.majority_label)}); a strategy below it has learnt nothing useful."
        )
    return note


def tradeoffs_section(summary: Summary) -> str:
    """Test accuracy against training time and against latency (figures), with their Pareto fronts."""
    from slmbench.report.plots import tradeoff_plot

    floor = summary.floor_accuracy
    parts = []
    for key, axis_label, file, what in (
        ("train_seconds", "training time (s)", "tradeoff_training.png", "training time"),
        ("latency_ms_per_example", "prediction latency (ms per example)", "tradeoff_latency.png", "latency"),
    ):
        measured = [(entry, cost) for entry in summary.entries if (cost := entry.cost(key)) is not None]
        if not measured:
            continue
        entries, costs = [entry for entry, _ in measured], [cost for _, cost in measured]
        scores = [entry.accuracy for entry in entries]
        front = stats.pareto_front(costs, scores)
        names = [entry.name for entry in entries]
        tradeoff_plot(
            names, costs, scores, front, axis_label, f"{summary.task}: test accuracy against {what}", summary.directory / file, floor=floor
        )
        front_names = ", ".join(code(names[i]) for i in sorted(front, key=lambda i: costs[i]))
        parts.append(f"![Test accuracy against {what}]({file})")
        parts.append(f"Pareto front for {what}, cheapest first: {front_names}.")
    if not parts:
        return ""
    intro = "On the Pareto front (dashed line), no other strategy is both cheaper and more accurate."
    if floor is not None:
        intro += " The grey line is the majority-class floor."
    return "\n\n".join(["## Trade-offs", intro, *parts])
