"""What the test set can see: the smallest differences it detects between the two most accurate
strategies, and how many test examples would settle a difference it cannot.

Accuracy: McNemar's test has a closed-form power (Connor 1987) in the share of examples that exactly
one of the two gets right, the "discordant" share observed between leader and runner-up. Macro-F1 has
none: its detectable difference is the normal approximation (z_alpha/2 + z_power) x the paired
bootstrap standard error of the difference.
"""

from __future__ import annotations

from slmbench.report import stats
from slmbench.report.markdown import code, metric, p_value
from slmbench.report.recommend import SIGNIFICANCE, difference_p, paired_rows
from slmbench.report.summary import Summary

POWER = 0.8


def sensitivity_section(summary: Summary) -> str:
    """The detectable accuracy and macro-F1 differences at this test size; empty below two comparable entries."""
    if len(summary.entries) < 2:
        return ""
    leader, runner_up = summary.entries[0], summary.entries[1]
    paired = paired_rows(leader, runner_up)
    if paired is None:
        return ""
    gold, rows_leader, rows_runner_up = paired
    n, seeds = len(gold), len(rows_leader)
    psi, delta = stats.discordance(gold, rows_leader, rows_runner_up)
    accuracy_mde = stats.mcnemar_detectable_difference(n, psi, SIGNIFICANCE, POWER)
    f1_se = stats.paired_difference_se(gold, rows_leader, rows_runner_up, stats.macro_f1(len(summary.labels)))
    f1_mde = stats.detectable_by_se(f1_se, SIGNIFICANCE, POWER)
    f1_delta = leader.macro_f1 - runner_up.macro_f1
    p = difference_p(leader, runner_up)
    pair = f"{code(leader.name)} and {code(runner_up.name)}"
    seeds_note = f" (averaged over {seeds} seeds)" if seeds > 1 else ""
    lines = [
        "## What this test set can see",
        f"The {n} test examples are the same for every strategy, so two strategies can be compared example by example. "
        f"{pair}, the two most accurate, are right on different examples {psi:.1%} of the time{seeds_note}.",
    ]
    needed = stats.mcnemar_examples_needed(psi, delta, SIGNIFICANCE, POWER)
    if psi == 0:
        lines.append("They are right on exactly the same examples, so this test set cannot tell them apart at all.")
    elif accuracy_mde is None:
        lines.append(
            f"That is too few disagreements for a paired test at α = {SIGNIFICANCE}: even if one of them were right on every "
            f"one of those examples, the difference ({metric(psi)}) would be detected with less than {POWER:.0%} power."
        )
    else:
        lines.append(
            f"At that disagreement, a paired test at α = {SIGNIFICANCE} would detect, with {POWER:.0%} power, an accuracy difference of "
            f"at least **{metric(accuracy_mde)}** (McNemar's test, Connor's 1987 power formula; the exact test, used in the "
            f"leaderboard with one seed, has a few points less power) and a macro-F1 difference of at "
            f"least **{metric(f1_mde)}** (normal approximation with the paired bootstrap standard error, {metric(f1_se)}). "
            f"The observed differences are {metric(delta)} in accuracy (p = {p_value(p)} for this pair alone; the "
            f"leaderboard's p is adjusted for all its comparisons) and {metric(f1_delta)} in macro-F1."
        )
    if p is not None and p >= SIGNIFICANCE and needed is not None and delta > 0 and needed > n:
        lines.append(
            f"The leader's advantage is not significant here. If it is real and they keep disagreeing as often, about "
            f"**{needed:,} test examples** would show it with {POWER:.0%} power ({needed / n:.1f} times this test set)."
        )
    smallest = min((summary.run.splits.per_class.get("test", {}) if summary.run else {}).items(), key=lambda item: item[1], default=None)
    if smallest is not None and len(summary.labels) > 1:
        lines.append(
            f"Accuracy weighs every example alike, so with {smallest[1]} test examples in the smallest class "
            f"({code(smallest[0])}) a strategy can fail a minority class and lose little accuracy: read macro-F1 and the "
            "per-class table too."
        )
    return "\n\n".join([lines[0], " ".join(lines[1:])])
