"""How responsive is the window? The gaps between ticks of a 10 ms QTimer on the GUI thread.

A freeze of the event loop shows as one long gap. Used by the responsiveness benchmark and
by the widget tests, which report the figures (they never assert a time).
"""

from __future__ import annotations

import time

import numpy as np


class TickGaps:
    """Record when a 10 ms QTimer fires on the GUI thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.times: list[float] = []

    def _tick(self) -> None:
        self.times.append(time.perf_counter())

    def start(self) -> None:
        self.times = []
        self.timer.start()

    def ticks_between(self, start: float, end: float) -> int:
        """How many ticks came between two ``time.perf_counter()`` readings."""
        return sum(start <= t <= end for t in self.times)

    def stop(self) -> dict:
        """Stop; the number of ticks and the median, 99th percentile and longest gap in ms."""
        self.timer.stop()
        gaps = np.diff(self.times) * 1000
        if not len(gaps):
            return {"ticks": len(self.times), "median ms": float("nan"), "p99 ms": float("nan"), "max ms": float("nan")}
        return {"ticks": len(self.times), "median ms": float(np.median(gaps)),
                "p99 ms": float(np.percentile(gaps, 99)), "max ms": float(gaps.max())}  # fmt: skip
