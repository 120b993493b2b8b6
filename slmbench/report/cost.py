"""The cost section: what each strategy costs to build and per 1,000 predictions, and the volume of
predictions from which a strategy that trains becomes cheaper overall than one that prompts.

Build cost is the training time, the option search included. Prediction cost is the time per example
of a batched run (throughput use) and of single requests (a service answering one user at a time,
the p50), on the device the trial ran on. With ``--price-per-hour DEVICE=PRICE`` for every device used,
times become money; otherwise they stay device-seconds. Total cost at a volume V is
build + V x per-prediction cost; two such lines cross at the break-even volume.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from slmbench.report.markdown import MISSING, code, number, table, text
from slmbench.report.options import ReportOptions
from slmbench.report.summary import Entry, Summary

PER = 1000
PROMPTING = "prompting"


def _device(entry: Entry) -> str:
    """The kind of device the entry ran on (``cuda:1`` is ``cuda``)."""
    return (entry.first.models.device if entry.first.models else "cpu").split(":")[0]


def _single_p50_ms(entry: Entry) -> float | None:
    """Median single-request latency, mean over the seeds that measured it."""
    values = [trial.cost.single_request.p50_ms for trial in entry.trials if trial.cost.single_request]
    return statistics.fmean(values) if values else None


def break_even(build_a: float, per_a: float, build_b: float, per_b: float) -> str:
    """When A's total cost (build + volume x per-prediction) is below B's, as a table cell."""
    if build_a <= build_b and per_a <= per_b:
        return "always"
    if build_a >= build_b and per_a >= per_b:
        return "never"
    volume = (build_a - build_b) / (per_b - per_a)
    return f"from {number(math.ceil(volume))}" if build_a > build_b else f"up to {number(math.floor(volume))}"


def cost_section(summary: Summary, options: ReportOptions) -> str:
    """The cost table, break-even table and total-cost figure; empty without build and prediction times."""
    from slmbench.report.plots import cost_plot

    measured = [
        entry for entry in summary.entries if entry.cost("train_seconds") is not None and entry.cost("latency_ms_per_example") is not None
    ]
    if not measured:
        return ""
    devices = sorted({_device(entry) for entry in measured})
    unpriced = [device for device in devices if options.price(device) is None]
    in_money = bool(options.price_per_hour) and not unpriced
    unit = "price units" if in_money else "device-seconds"
    comparable = in_money or len(devices) == 1

    def scale(entry: Entry) -> float:
        price = options.price(_device(entry))
        return price / 3600 if in_money and price is not None else 1.0

    seconds = {
        entry.name: (
            entry.cost("train_seconds") or 0.0,
            (entry.cost("latency_ms_per_example") or 0.0) / 1000,
            p50 / 1000 if (p50 := _single_p50_ms(entry)) is not None else None,
        )
        for entry in measured
    }
    build = {entry.name: seconds[entry.name][0] * scale(entry) for entry in measured}
    per_prediction = {entry.name: seconds[entry.name][1] * scale(entry) for entry in measured}

    def cells(entry: Entry, factor: float, show: Callable[[float], str]) -> list[str]:
        built, batched, single = seconds[entry.name]
        return [show(built * factor), show(batched * PER * factor), MISSING if single is None else show(single * PER * factor)]

    rows = [
        [
            text(entry.name),
            text(_device(entry)),
            *cells(entry, 1.0, number),
            *(cells(entry, scale(entry), lambda value: f"{value:.3g}") if in_money else []),
        ]
        for entry in measured
    ]
    headers = ["strategy", "device", "build (s)", f"per {PER:,} batched (s)", f"per {PER:,} single requests (s)"]
    if in_money:
        headers += ["build (price)", f"per {PER:,} batched (price)", f"per {PER:,} single requests (price)"]
    if comparable:
        cost_plot(
            build,
            per_prediction,
            unit,
            (summary.task, "total cost against predictions (batched)"),
            summary.directory / "cost_per_volume.png",
        )
    prompting = [entry for entry in measured if entry.family == PROMPTING] or [min(measured, key=lambda entry: build[entry.name])]
    others = [entry for entry in measured if entry not in prompting]
    if in_money:
        prices = ", ".join(f"{text(device)} {options.price(device):g} per hour" for device in devices)
        how = f"in seconds of the device each ran on and in the units of `--price-per-hour` ({prices})"
    else:
        how = "in seconds of the device each ran on (give `--price-per-hour DEVICE=PRICE`, e.g. `cpu=0.10`, for money)"
        if options.price_per_hour:
            how += f"; no price was given for {', '.join(map(code, unpriced))}, so no money is shown"
    parts = [
        "## Cost per prediction",
        f"What each strategy costs {how}: to build (training, the option search included) and per {PER:,} predictions, "
        "batched (throughput use) or one request at a time (a service answering one user, p50). A strategy cheap to build "
        "can be dear per call, and the reverse: the figure draws each strategy's total cost, build + predictions × batched "
        "cost, against the number of predictions; the lowest line at your volume is the cheapest.",
        table(headers, rows),
    ]
    missing = [entry.name for entry in summary.entries if entry not in measured]
    if missing:
        parts.append(f"No build or prediction time recorded, so not costed: {', '.join(map(code, missing))}.")
    if not comparable:
        parts.append(
            f"The strategies ran on different devices ({', '.join(map(code, devices))}), whose seconds do not cost the same: "
            "give `--price-per-hour` for each device to compare their totals and see the break-even volumes."
        )
        return "\n\n".join(parts)
    parts.append("![Total cost against the number of predictions](cost_per_volume.png)")
    if others:
        against = "prompting strategy" if prompting[0].family == PROMPTING else "strategy cheapest to build"
        break_rows = [
            [
                text(entry.name),
                *(
                    break_even(build[entry.name], per_prediction[entry.name], build[rival.name], per_prediction[rival.name])
                    for rival in prompting
                ),
            ]
            for entry in others
        ]
        parts += [
            f"Break-even: from how many (batched) predictions each strategy is cheaper overall than each {against} "
            '("always": cheaper to build and per prediction; "never": dearer on both; "up to": cheaper only below that volume).',
            table(["strategy", *(f"vs {text(rival.name)}" for rival in prompting)], break_rows),
        ]
    return "\n\n".join(parts)
