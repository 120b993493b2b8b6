"""What a user asks of a report beyond the run's records and the constraints: the accuracy to aim for
(labels needed) and what an hour of each device costs (cost per prediction and break-even)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportOptions:
    """``--target-accuracy`` and ``--price-per-hour``; the defaults are the report's own."""

    target_accuracy: float | None = None
    """Labels needed to reach this test accuracy (default: the best measured)."""
    price_per_hour: tuple[tuple[str, float], ...] = ()
    """(device, price of one hour of it), e.g. (("cpu", 0.10), ("cuda", 2.50)); costs in money where all are priced."""

    def price(self, device: str) -> float | None:
        """The hourly price of ``device`` (``cuda:1`` is priced as ``cuda``), or None when unpriced."""
        kind = device.split(":")[0]
        return next((price for name, price in self.price_per_hour if name == kind), None)
