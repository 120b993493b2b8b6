"""The decision report: ``report.md`` and its PNG figures, from a run folder's records alone.

Nothing but the run folder (``run.json``, the trial records, ``test_texts.json``) is needed, so a
copied run folder renders the same report. The grouping of trials into variants over seeds is
``slmbench.report.summary``'s, the recommendation ``slmbench.report.recommend``'s, the formatting
``slmbench.report.markdown``'s. This module writes the opening, the recommendation and the failures
and puts the sections together; the leaderboard and trade-offs are ``slmbench.report.leaderboard``'s,
what the test set can detect ``sensitivity``'s, cost per prediction ``cost``'s, the learning curves
``learning_curves``'s (labels needed: ``labels_needed``), calibration ``calibration``'s, the per-class
results ``per_class``'s.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from slmbench.common.text import plural
from slmbench.records import TrialFile, write_text
from slmbench.report import appendix
from slmbench.report import markdown as md
from slmbench.report.calibration import calibration_section
from slmbench.report.cost import cost_section
from slmbench.report.leaderboard import leaderboard_section, tradeoffs_section
from slmbench.report.learning_curves import learning_curves_section
from slmbench.report.live import RunProgress, progress_section
from slmbench.report.markdown import code, metric, number, text
from slmbench.report.options import ReportOptions
from slmbench.report.per_class import per_class_section
from slmbench.report.recommend import (
    SIGNIFICANCE,
    Constraints,
    Recommendation,
    beats_floor,
    difference_p,
    difference_test,
    recommend,
)
from slmbench.report.sensitivity import sensitivity_section
from slmbench.report.summary import Entry, Summary, load_summary

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


def _verdict(advice: Recommendation, best: Entry, constraints: Constraints) -> str:
    """The opening sentence: what to use, or that nothing fits the constraints (``best`` is ``advice.best``)."""
    if advice.choice is None:
        return (
            f"**No strategy meets your constraints** ({constraints.describe()}). Without them, the most accurate is "
            f"{code(best.name)}: {_quality_summary(best)}; it {_cost_summary(best)}."
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


def _below_floor(summary: Summary, advice: Recommendation) -> str | None:
    """In place of the verdict when the choice is no more accurate than always answering the majority label: a
    strategy that a constant answer matches has learnt nothing worth deploying, however it ranks."""
    choice, floor = advice.choice, summary.floors
    if choice is None or floor is None or beats_floor(choice, floor.accuracy):
        return None
    return (
        f"**No strategy beats the majority-class floor**: always answering {code(floor.majority_label)} scores "
        f"{metric(floor.accuracy)}, and the best strategy here, {code(choice.name)}, has {_quality_summary(choice)}; it "
        f"{_cost_summary(choice)}. Nothing tried has learnt this task: try strategies that learn from the labels, "
        "more train examples or a larger model."
    )


def _tie(advice: Recommendation) -> str:
    """Why a cheaper variant is preferred to a more accurate one."""
    choice, rival = advice.choice, advice.best_allowed
    assert choice is not None and rival is not None, "a tie p-value compares the choice with the best allowed variant"
    noise = f"on these {len(rival.gold)} test examples ({difference_test(choice, rival)}, p = {md.p_value(advice.tie_p_value)})"
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
    paragraphs = ["## Recommendation", _below_floor(summary, advice) or _verdict(advice, advice.best, constraints)]
    if advice.tie_p_value is not None:
        paragraphs.append(_tie(advice))
    if advice.excluded:
        excluded = "; ".join(f"{code(name)} ({', '.join(reasons)})" for name, reasons in advice.excluded.items())
        paragraphs.append(f"Your constraints ({constraints.describe()}) rule out {excluded}.")
        if advice.best_allowed is not None and advice.best is not advice.best_allowed:
            paragraphs[-1] += f" Constraints aside, the most accurate is {code(advice.best.name)} ({_quality_summary(advice.best)})."
    if advice.choice is not None and len(advice.choice.trials) > 1:
        paragraphs.append(
            f"{code(advice.choice.name)} ran with {len(advice.choice.trials)} seeds; `slmbench predict` and `slmbench export` "
            "take the seed with the best *validation* accuracy (never test accuracy, which would make its score optimistic)."
        )
    if (ensemble := _ensemble_sentence(summary)) is not None:
        paragraphs.append(ensemble)
    failed = {
        file.record.name if file.record else file.file for file in summary.failures if file.record is None or file.record.train_size is None
    }
    if failed:
        paragraphs.append(
            f"{plural(len(failed), 'strategy', 'strategies')} produced no predictions (failed, timed out or cancelled): see Failures."
        )
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
    combiner = ensemble.first.details.get("combiner")
    how = f" It combined them with {text(md.one_line(str(combiner)))}." if combiner else ""
    return (
        f"Combining strategies: {code(ensemble.name)} ({_quality_summary(ensemble)}) {verdict} the best single strategy "
        f"{code(best.name)} ({metric(best.accuracy)}) {noise} ({difference_test(ensemble, best)}, p = {md.p_value(p)}); "
        f"its costs include those of every strategy it combines.{how}"
    ).replace("  ", " ")


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


def render_markdown(
    summary: Summary,
    constraints: Constraints = Constraints(),
    options: ReportOptions = ReportOptions(),
    progress: RunProgress | None = None,
) -> str:
    """The report's markdown (figures are written beside the run folder's records as a side effect);
    ``progress``: the run is still going (a banner says what is still to come; no labels-needed fits yet)."""
    advice = recommend(summary, constraints)
    sections = [
        _title(summary),
        _introduction(summary),
        progress_section(progress) if progress else "",
        _recommendation(summary, advice, constraints),
        leaderboard_section(summary),
        sensitivity_section(summary),
        tradeoffs_section(summary),
        cost_section(summary, options),
        learning_curves_section(summary, options.target_accuracy, fit=progress is None),
        calibration_section(summary),
        per_class_section(summary),
        appendix.deployment(summary, constraints),
        _failures(summary),
        *appendix.sections(summary),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def render_report(
    run_dir: Path, constraints: Constraints = Constraints(), options: ReportOptions = ReportOptions(), progress: RunProgress | None = None
) -> Path:
    """Write ``report.md`` (and its PNG figures) into ``run_dir`` from its records, each file replaced whole
    (never half-written); return its path. ``progress``: the run is still going."""
    summary = load_summary(run_dir)
    path = summary.directory / "report.md"
    write_text(path, render_markdown(summary, constraints, options, progress))
    return path
