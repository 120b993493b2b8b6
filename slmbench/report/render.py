"""The decision report: ``report.md`` and its PNG figures, from a run folder's records alone.

Nothing but the run folder (``run.json``, the trial records, ``test_texts.json``) is needed, so a
copied run folder renders the same report. The grouping of trials into variants over seeds is
``slmbench.report.summary``'s, the recommendation ``slmbench.report.recommend``'s, the formatting
``slmbench.report.markdown``'s; this module writes the sections.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from slmbench.records import TrialFile, write_text
from slmbench.report import appendix, stats
from slmbench.report import markdown as md
from slmbench.report.markdown import MISSING, code, metric, number, plural, table, text
from slmbench.report.recommend import (
    SIGNIFICANCE,
    Constraints,
    Recommendation,
    difference_p,
    difference_test,
    recommend,
)
from slmbench.report.summary import Entry, Summary, load_summary

BOOTSTRAP_RESAMPLES = 1000
MAX_MATRIX_LABELS = 12
"""Above this many classes the confusion matrix is summarised as its most frequent confusions."""
MAX_WRONG_EXAMPLES = 5
MAX_TEXT_CHARS = 160


# --- opening ------------------------------------------------------------------------------------


def _title(summary: Summary) -> str:
    date = text(md.one_line((summary.run.started_at if summary.run else None) or "")[:10])
    return f"# Decision report: {text(summary.task)}" + (f" ({date})" if date else "")


def _introduction(summary: Summary) -> str:
    run, labels = summary.run, summary.labels
    n_test = (run.splits.sizes.get("test") if run else None) or len(next((e.gold for e in summary.entries), []))
    seeds = summary.seeds
    ways = len({file.record.name for file in summary.folder.trials if file.record and file.record.train_size is None})
    intro = (
        f"slmbench tried {plural(ways, 'way')} of adapting a small language model to classify "
        f"{code(summary.task)} texts into {len(labels)} classes ({', '.join(map(text, labels))}), all on the same data "
        f"split and budget, and measured their quality on {n_test} held-out test examples and what each one costs."
    )
    if len(seeds) > 1:
        intro += f" Every strategy ran with {len(seeds)} seeds ({', '.join(map(str, seeds))}); the numbers are their means."
    if run is None:
        return intro
    intro += f" Run {code(run.run_id)}, started {text(run.started_at or 'at an unrecorded time')}."
    if not run.commands:
        return intro
    lead = "Reproduce with:" if len(run.commands) == 1 else "Reproduce with these commands, in order (each adds to the run folder):"
    return f"{intro}\n\n{lead}\n\n{md.fenced(run.commands, 'sh')}"


# --- recommendation -----------------------------------------------------------------------------


def _cost_summary(entry: Entry) -> str:
    return (
        f"trains in {number(entry.cost('train_seconds'))} s, "
        f"predicts in {number(entry.cost('latency_ms_per_example'))} ms per example "
        f"and peaks at {number(entry.cost('peak_memory_mb'))} MiB of memory"
    )


def _quality_summary(entry: Entry) -> str:
    spread = f" (sd {entry.accuracy_sd:.3f} over {len(entry.trials)} seeds)" if entry.accuracy_sd is not None else ""
    return f"accuracy {metric(entry.accuracy)}{spread}, macro-F1 {metric(entry.macro_f1)}"


def _verdict(advice: Recommendation, constraints: Constraints) -> str:
    """The opening sentence: what to use, or that nothing fits the constraints."""
    if advice.choice is None:
        return (
            f"**No strategy meets your constraints** ({constraints.describe()}). Without them, the most accurate is "
            f"{code(advice.best.name)}: {_quality_summary(advice.best)}; it {_cost_summary(advice.best)}."
        )
    choice = advice.choice
    family = f" ({text(choice.family)} family)" if choice.family else ""
    what = f": {text(choice.description.rstrip('.'))}" if choice.description else ""
    verdict = f"**Use {code(choice.name)}**{family}{what}. It has {_quality_summary(choice)}; it {_cost_summary(choice)}."
    if choice is advice.best:
        verdict += " It is the most accurate strategy, and no cheaper one is statistically tied with it."
    elif choice is advice.best_allowed:
        verdict += " It is the most accurate strategy that meets your constraints."
    return verdict


def _tie(advice: Recommendation) -> str:
    """Why a cheaper variant is preferred to a more accurate one."""
    choice, rival = advice.choice, advice.best_allowed
    noise = (
        f"on these {len(rival.gold)} test examples ({difference_test(choice, rival)}, p = {md.p_value(advice.tie_p_value)})"
    )
    return (
        f"{code(rival.name)} is more accurate ({_quality_summary(rival)}), but not significantly so {noise}, and "
        f"{code(choice.name)} is cheaper: {number(choice.cost('train_seconds'))} s instead of "
        f"{number(rival.cost('train_seconds'))} s of training, {number(choice.cost('peak_memory_mb'))} instead of "
        f"{number(rival.cost('peak_memory_mb'))} MiB of peak memory. A small test set only detects large "
        "differences: the confidence intervals in the leaderboard show how large."
    )


def _recommendation(summary: Summary, advice: Recommendation, constraints: Constraints) -> str:
    if advice.best is None:
        return "## Recommendation\n\nNo strategy produced predictions, so there is nothing to recommend: see Failures."
    paragraphs = ["## Recommendation", _verdict(advice, constraints)]
    if advice.tie_p_value is not None:
        paragraphs.append(_tie(advice))
    if advice.excluded:
        excluded = "; ".join(f"{code(name)} ({', '.join(reasons)})" for name, reasons in advice.excluded.items())
        paragraphs.append(f"Your constraints ({constraints.describe()}) rule out {excluded}.")
        if advice.best_allowed is not None and advice.best is not advice.best_allowed:
            paragraphs[-1] += f" Constraints aside, the most accurate is {code(advice.best.name)} ({_quality_summary(advice.best)})."
    if (ensemble := _ensemble_sentence(summary)) is not None:
        paragraphs.append(ensemble)
    failed = {file.record.name if file.record else file.file for file in summary.failures
              if file.record is None or file.record.train_size is None}
    if failed:
        paragraphs.append(f"{plural(len(failed), 'strategy', 'strategies')} produced no predictions (failed, timed out or "
                          "cancelled): see Failures.")
    return "\n\n".join(paragraphs)


def _ensemble_sentence(summary: Summary) -> str | None:
    """Whether combining strategies beats the best single one beyond noise."""
    ensembles = [entry for entry in summary.entries if entry.family == "ensemble"]
    singles = [entry for entry in summary.entries if entry.family != "ensemble"]
    if not ensembles or not singles:
        return None
    ensemble, best = ensembles[0], singles[0]
    p = difference_p(ensemble, best)
    beats = ensemble.accuracy > best.accuracy and p is not None and p < SIGNIFICANCE
    verdict = "beats" if beats else ("is more accurate than" if ensemble.accuracy > best.accuracy else "does not beat")
    noise = "beyond noise" if beats else "but not beyond noise" if ensemble.accuracy > best.accuracy else ""
    return (
        f"Combining strategies: {code(ensemble.name)} ({_quality_summary(ensemble)}) {verdict} the best single strategy "
        f"{code(best.name)} ({metric(best.accuracy)}) {noise} ({difference_test(ensemble, best)}, p = {md.p_value(p)}); "
        "its costs include those of every strategy it combines."
    ).replace("  ", " ")


# --- leaderboard --------------------------------------------------------------------------------


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
    return f"{number(sum(l.p50_ms for l in latencies) / len(latencies))} / {number(sum(l.p95_ms for l in latencies) / len(latencies))}"


def _cost_cells(entry: Entry) -> list[str]:
    return [
        number(entry.cost("train_seconds")), number(entry.cost("predict_seconds")),
        number(entry.cost("latency_ms_per_example")), _single_request(entry), number(entry.cost("throughput_examples_per_second")),
        number(entry.cost("peak_memory_mb")), md.count(entry.cost("trainable_params")),
        md.count(entry.cost("total_params")), md.size(entry.cost("artifact_bytes")),
    ]


def _leaderboard(summary: Summary) -> str:
    ranked = summary.entries
    if not ranked:
        return ""
    seed = min(summary.run.seeds) if summary.run and summary.run.seeds else 0
    f1_metric = stats.macro_f1(len(summary.labels))
    several = any(len(entry.trials) > 1 for entry in ranked)
    with_tokens = any(entry.mean_of("prompt_tokens_per_example") is not None for entry in ranked)
    leader = ranked[0]
    test_name = "p vs #1" if several else "McNemar p vs #1"
    headers = [
        "#", "strategy", "family", "accuracy (95% CI)", *(["accuracy across seeds (sd; min–max)"] if several else []),
        "macro-F1 (95% CI)", test_name, "train (s)", "predict (s)", "latency (ms/example)",
        "single request p50 / p95 (ms)", "throughput (examples/s)",
        "peak memory (MiB)", "trainable params", "total params", "artifact size",
    ] + (["prompt tokens/example"] if with_tokens else [])
    rows = [
        [
            rank, text(entry.name), text(entry.family or MISSING),
            md.interval(entry.accuracy, _interval(entry, stats.accuracy, seed)), *([_spread(entry)] if several else []),
            md.interval(entry.macro_f1, _interval(entry, f1_metric, seed)),
            MISSING if rank == 1 else md.p_value(difference_p(leader, entry)),
            *_cost_cells(entry),
            *([number(entry.mean_of("prompt_tokens_per_example"))] if with_tokens else []),
        ]
        for rank, entry in enumerate(ranked, 1)
    ]
    if summary.floors is not None:
        floor = summary.floors
        cells = ["", f"*floor: always {text(floor.majority_label)}*", MISSING, metric(floor.accuracy),
                 *([MISSING] if several else []), metric(floor.macro_f1)]
        rows.append([*cells, *[MISSING] * (len(headers) - len(cells))])  # as many cells as the header
    if several:
        how = (
            f"Accuracies are means over seeds. 95% confidence intervals: percentile bootstrap over the seeds and the test examples together "
            f"({BOOTSTRAP_RESAMPLES:,} resamples, seed {seed}). p vs #1: paired bootstrap over the seeds both share and the "
            f"test examples (McNemar's exact test where they share one seed)"
        )
    else:
        how = (
            f"95% confidence intervals: percentile bootstrap over the test examples ({BOOTSTRAP_RESAMPLES:,} resamples, "
            f"seed {seed}). McNemar p: exact two-sided test on the test examples where exactly one of the strategy and "
            f"{code(leader.name)} (#1) is right"
        )
    note = (
        f"Sorted by test accuracy. {how}; p < {SIGNIFICANCE} means the accuracy difference is unlikely to be chance "
        "(no correction for multiple comparisons). Latency is the prediction time per test example in a batch run; "
        "a single request is one text per call (a warm service answering one user at a time); peak memory includes the "
        "shared models."
    )
    if summary.floors is not None:
        note += (
            f" The floor row is no strategy: it always answers the train split's most frequent label "
            f"({text(summary.floors.majority_label)}); a strategy below it has learnt nothing useful."
        )
    return "\n\n".join(["## Leaderboard", table(headers, rows), note])


# --- figures ------------------------------------------------------------------------------------


def _tradeoffs(summary: Summary) -> str:
    from slmbench.report.plots import tradeoff_plot

    floor = summary.floors.accuracy if summary.floors else None
    parts = []
    for key, axis_label, file, what in (
        ("train_seconds", "training time (s)", "tradeoff_training.png", "training time"),
        ("latency_ms_per_example", "prediction latency (ms per example)", "tradeoff_latency.png", "latency"),
    ):
        entries = [entry for entry in summary.entries if entry.cost(key) is not None]
        if not entries:
            continue
        costs, scores = [entry.cost(key) for entry in entries], [entry.accuracy for entry in entries]
        front = stats.pareto_front(costs, scores)
        names = [entry.name for entry in entries]
        tradeoff_plot(names, costs, scores, front, axis_label, f"{summary.task}: test accuracy against {what}",
                      summary.directory / file, floor=floor)
        front_names = ", ".join(code(names[i]) for i in sorted(front, key=lambda i: costs[i]))
        parts.append(f"![Test accuracy against {what}]({file})")
        parts.append(f"Pareto front for {what}, cheapest first: {front_names}.")
    if not parts:
        return ""
    intro = "On the Pareto front (dashed line), no other strategy is both cheaper and more accurate."
    if floor is not None:
        intro += " The grey line is the majority-class floor."
    return "\n\n".join(["## Trade-offs", intro, *parts])


def leader_changes(curves: dict[str, dict[int, float]], flat: dict[str, float]) -> list[tuple[int, str, float]]:
    """(size, most accurate variant, its accuracy) at the smallest size and wherever the leader changes.

    At each size the leader is picked among the variants measured at that size and the flat ones.
    """
    changes: list[tuple[int, str, float]] = []
    for size in sorted({size for points in curves.values() for size in points}):
        scores = {**flat, **{name: points[size] for name, points in curves.items() if size in points}}
        leader = max(sorted(scores), key=lambda name: scores[name])
        if not changes or changes[-1][1] != leader:
            changes.append((size, leader, scores[leader]))
    return changes


def _crossover_sentences(changes: list[tuple[int, str, float]], sizes: list[int]) -> str:
    """Where the most accurate variant changes, as sentences; the size before each change bounds it."""
    (size, first, accuracy), *later = changes
    sentences = f"With {size} labelled train examples the most accurate strategy is {code(first)} ({metric(accuracy)})."
    previous = first
    for size, leader, accuracy in later:
        before = sizes[sizes.index(size) - 1]
        sentences += f" {code(leader)} overtakes {code(previous)} between {before} and {size} examples ({metric(accuracy)} at {size})."
        previous = leader
    if not later:
        sentences += " It stays the most accurate at every size measured."
    return sentences


def _learning_curves(summary: Summary) -> str:
    from slmbench.report.plots import learning_curve_plot

    curves, flat = summary.curves, summary.flat
    if not curves:
        return ""
    means = {name: {size: point.mean for size, point in points.items()} for name, points in curves.items()}
    bands = {name: {size: (min(p.accuracies), max(p.accuracies)) for size, p in points.items()} for name, points in curves.items()}
    learning_curve_plot(means, bands, flat, f"{summary.task}: test accuracy against labelled train examples",
                        summary.directory / "learning_curves.png", floor=summary.floors.accuracy if summary.floors else None)
    sizes = sorted({size for points in means.values() for size in points})
    n_train = max(sizes)
    rows = [[text(name), *(metric(points.get(size)) for size in sizes)] for name, points in sorted(means.items())]
    rows += [[f"{text(name)} (learns from no example)", *(metric(flat[name]) for _ in sizes)] for name in sorted(flat)]
    headers = ["strategy", *(f"{size} examples" + (" (whole split)" if size == n_train else "") for size in sizes)]
    seeds = " With several seeds each point is their mean and the band their range." if len(summary.seeds) > 1 else ""
    return "\n\n".join([
        "## Learning curves",
        "Each strategy was also given nested, stratified subsets of the train split (a smaller subset is part "
        "of every larger one), with the validation split cut in the same proportion, and scored on the same "
        "test examples. " + _crossover_sentences(leader_changes(means, flat), sizes) + " A difference of a "
        "few points can be noise at this test size: see the confidence intervals in the leaderboard." + seeds,
        "![Test accuracy against labelled train examples](learning_curves.png)",
        table(headers, rows),
    ])


# --- per class ----------------------------------------------------------------------------------


def _per_class(summary: Summary) -> str:
    from slmbench.report.plots import f1_heatmap

    ranked, labels = summary.entries, summary.labels
    if not ranked or not labels:
        return ""
    best = ranked[0].first
    per_class = best.metrics.per_class
    rows = [[text(label), per_class[label].support if label in per_class else MISSING,
             *(metric(entry.f1(label)) for entry in ranked)] for label in labels]
    values = [[math.nan if e.f1(label) is None else e.f1(label) for e in ranked] for label in labels]
    f1_heatmap([entry.name for entry in ranked], labels, values, summary.directory / "per_class_f1.png")
    seed_note = f" (seed {best.seed})" if len(summary.seeds) > 1 else ""
    parts = [
        "## Per-class results",
        "F1 on each class (rows) for each strategy (columns, in leaderboard order); "
        "support is the number of test examples of the class.",
        table(["class", "support", *(text(entry.name) for entry in ranked)], rows),
        "![F1 per class and strategy](per_class_f1.png)",
        _confusion(ranked[0].name + seed_note, best.metrics.confusion_matrix, labels),
        _wrong_examples(summary, ranked[0].name + seed_note, best),
    ]
    return "\n\n".join(part for part in parts if part)


def _confusion(name: str, matrix: list[list[int]], labels: list[str]) -> str:
    if not matrix or len(matrix) != len(labels):
        return ""
    title = f"### Confusion matrix of {code(name)}"
    if len(labels) > MAX_MATRIX_LABELS:
        return f"{title}\n\n{_top_confusions(matrix, labels)}"
    rows = [
        [f"**{text(gold)}**", *(f"**{n}**" if g == p else n for p, n in enumerate(row))]
        for g, (gold, row) in enumerate(zip(labels, matrix))
    ]
    explanation = "Rows are the true classes, columns the predicted ones; the diagonal (bold) is correct."
    return f"{title}\n\n{explanation}\n\n{table(['gold ↓ / predicted →', *map(text, labels)], rows)}"


def _top_confusions(matrix: list[list[int]], labels: list[str], top: int = 10) -> str:
    """The most frequent (gold, predicted) mistakes: a full matrix would not fit on a page."""
    mistakes = [(n, labels[g], labels[p]) for g, row in enumerate(matrix) for p, n in enumerate(row) if g != p and n]
    rows = [[text(gold), text(predicted), n] for n, gold, predicted in sorted(mistakes, key=lambda m: -m[0])[:top]]
    return (
        f"Its {len(rows)} most frequent confusions ({len(labels)} classes are too many for a full matrix):\n\n"
        + table(["gold", "predicted", "test examples"], rows)
    )


def _wrong_examples(summary: Summary, name: str, best: Any) -> str:
    texts, labels, predictions = summary.test_texts, summary.labels, best.predictions
    gold, predicted = predictions.gold, predictions.predicted
    if not texts or len(texts) != len(gold) or len(predicted) != len(gold):
        return ""
    wrong = [i for i, (g, p) in enumerate(zip(gold, predicted)) if g != p]
    if not wrong:
        return ""
    probabilities = predictions.probabilities if predictions.probabilities and len(predictions.probabilities) == len(texts) else None
    if probabilities:
        wrong.sort(key=lambda i: -probabilities[i][predicted[i]])
    rows = [
        [text(md.shorten(texts[i], MAX_TEXT_CHARS)), text(labels[gold[i]]), text(labels[predicted[i]]),
         *([metric(probabilities[i][predicted[i]])] if probabilities else [])]
        for i in wrong[:MAX_WRONG_EXAMPLES]
    ]
    headers = ["test text", "gold", "predicted"] + (["confidence"] if probabilities else [])
    order = "most confident mistakes first" if probabilities else "in test order"
    return f"### Test examples {code(name)} gets wrong\n\n{len(rows)} of its {len(wrong)} mistakes, {order}:\n\n{table(headers, rows)}"


# --- failures -----------------------------------------------------------------------------------


def _failure_line(file: TrialFile, show_seed: bool) -> str:
    link = f"[{text(file.file)}]({quote(md.one_line(file.file))})"
    trial = file.record
    if trial is None:
        return f"- {code(file.file)} (unreadable): {code(file.problem)} — see {link}."
    error = trial.error
    summary = f"{error.type}: {md.first_line(error.message)}" if error else f"status {trial.status!r}, no error recorded"
    where = f"full traceback in {link} under `error.traceback`" if error and error.traceback else f"see {link}"
    status = "" if trial.status == "failed" else f" ({trial.status})"
    size = "" if trial.train_size is None else f" at {trial.train_size} train examples"
    seed = f" (seed {trial.seed})" if show_seed else ""
    return f"- {code(trial.name)}{size}{seed}{status}: {code(summary)} — {where}."


def _failures(summary: Summary) -> str:
    if not summary.failures:
        return ""
    return (
        "## Failures\n\nThese trials produced no predictions and are left out of every comparison above "
        "(status in brackets when the trial did not simply fail).\n\n"
        + "\n".join(_failure_line(file, len(summary.run.seeds if summary.run else []) > 1) for file in summary.failures)
    )


def render_markdown(summary: Summary, constraints: Constraints = Constraints()) -> str:
    """The report's markdown (figures are written beside the run folder's records as a side effect)."""
    advice = recommend(summary, constraints)
    sections = [
        _title(summary), _introduction(summary), _recommendation(summary, advice, constraints), _leaderboard(summary),
        _tradeoffs(summary), _learning_curves(summary), _per_class(summary), appendix.deployment(summary),
        _failures(summary), *appendix.sections(summary),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def render_report(run_dir: Path, constraints: Constraints = Constraints()) -> Path:
    """Write ``report.md`` (and its PNG figures) into ``run_dir`` from its records; return its path."""
    summary = load_summary(run_dir)
    path = summary.directory / "report.md"
    write_text(path, render_markdown(summary, constraints))
    return path
