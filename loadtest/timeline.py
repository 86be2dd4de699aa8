"""Windows of request statistics over a run, so stress steps and spike recovery can be judged.

Locust's counters are cumulative; the timeline keeps the difference between successive samples
(requests, failures, the rounded response-time histogram), which is small enough for a long run,
and merges any span of samples into a ``Window`` with the same statistics thresholds read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


def percentile(histogram: dict[int, int], count: int, fraction: float) -> float:
    """Response time (ms) that ``fraction`` of ``count`` requests finished within."""
    if count <= 0:
        return 0.0
    within = int(count * fraction)
    seen = 0
    for response_time in sorted(histogram, reverse=True):
        seen += histogram[response_time]
        if count - seen <= within:
            return float(response_time)
    return 0.0


@dataclass
class Sample:
    """What happened between the previous sample and ``t`` (seconds on the shape's clock)."""

    t: float
    users: int
    requests: int
    failures: int
    histogram: Counter = field(default_factory=Counter)
    total_ms: float = 0.0
    backpressure: int = 0  # back-pressure answers (loadtest.backpressure), not in requests


@dataclass
class Window:
    """Statistics over a span of samples, readable by threshold expressions."""

    start: float
    end: float
    num_requests: int
    num_failures: int
    histogram: Counter
    total_ms: float
    users: int
    num_backpressure: int = 0

    def get_response_time_percentile(self, fraction: float) -> float:
        return percentile(self.histogram, self.num_requests, fraction)

    @property
    def avg_response_time(self) -> float:
        return self.total_ms / self.num_requests if self.num_requests else 0.0

    @property
    def median_response_time(self) -> float:
        return self.get_response_time_percentile(0.5)

    @property
    def max_response_time(self) -> float:
        return float(max(self.histogram)) if self.histogram else 0.0

    @property
    def min_response_time(self) -> float:
        return float(min(self.histogram)) if self.histogram else 0.0

    @property
    def total_rps(self) -> float:
        span = self.end - self.start
        return self.num_requests / span if span > 0 else 0.0

    def summary(self) -> dict:
        return {
            "start_s": round(self.start, 1),
            "end_s": round(self.end, 1),
            "users": self.users,
            "requests": self.num_requests,
            "failures": self.num_failures,
            "rps": round(self.total_rps, 2),
            "p95_ms": self.get_response_time_percentile(0.95),
            "p99_ms": self.get_response_time_percentile(0.99),
            "error_ratio": round(self.num_failures / self.num_requests, 4)
            if self.num_requests
            else None,
            "backpressure": self.num_backpressure,
        }


class Timeline:
    """Samples of one StatsEntry-like object (``num_requests``, ``num_failures``,
    ``response_times``, ``total_response_time``) taken on a caller-supplied clock."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._last = (0, 0, Counter(), 0.0, 0)

    def sample(self, t: float, users: int, entry, backpressure: int = 0) -> None:
        """Record what changed since the last sample; ``backpressure`` is the run's running
        count of back-pressure answers."""
        requests, failures, histogram, total_ms, pushed_back = self._last
        now = (
            entry.num_requests,
            entry.num_failures,
            Counter(entry.response_times),
            float(entry.total_response_time),
            backpressure,
        )
        delta = now[2].copy()
        delta.subtract(histogram)
        self.samples.append(
            Sample(
                t,
                users,
                now[0] - requests,
                now[1] - failures,
                Counter({k: v for k, v in delta.items() if v > 0}),
                now[3] - total_ms,
                now[4] - pushed_back,
            )
        )
        self._last = now

    def window(self, start: float, end: float) -> Window:
        """Merge the samples taken in (start, end]."""
        chosen = [s for s in self.samples if start < s.t <= end]
        histogram: Counter = Counter()
        for s in chosen:
            histogram.update(s.histogram)
        return Window(
            start,
            end,
            sum(s.requests for s in chosen),
            sum(s.failures for s in chosen),
            histogram,
            sum(s.total_ms for s in chosen),
            max((s.users for s in chosen), default=0),
            sum(s.backpressure for s in chosen),
        )


def recovery_seconds(
    timeline: Timeline, drop_at: float, end: float, window: float, healthy
) -> float | None:
    """Seconds from ``drop_at`` until the start of the first trailing window after which every
    window up to ``end`` is ``healthy(Window) -> bool``; None if the service never got there."""
    ends = [s.t for s in timeline.samples if drop_at + window <= s.t <= end]
    recovered_from = None
    for t in ends:
        if healthy(timeline.window(t - window, t)):
            if recovered_from is None:
                recovered_from = t - window
        else:
            recovered_from = None
    return None if recovered_from is None else max(0.0, recovered_from - drop_at)
