"""The spike scenario: a sudden jump to several times the target, then back, timing recovery."""

from __future__ import annotations

from ..params import ShapeParams
from ..thresholds import judge_window
from ..timeline import recovery_seconds
from .staged import Stage, StagedShape, positive

#: Length of the trailing window judged for recovery: long enough to hold a few samples even in
#: distributed runs, where workers report every 3 s.
RECOVERY_WINDOW = 6.0


class SpikeShape(StagedShape):
    """Baseline at the target, a near-instant jump to ``multiplier`` times it, a near-instant drop
    back, then time how long the service takes to meet its ``recovered`` thresholds again.

    Stages (cumulative; defaults users=10, ramp=30 s, multiplier=5, spike_duration=30 s,
    recovery=60 s):

    ========  =======  =====================================
    until     users    spawn rate
    ========  =======  =====================================
    30 s      10       10/s (baseline, started at once)
    60 s      50       50/s (the spike: reached in ~1 s)
    120 s     10       50/s (dropped in ~1 s; recovery observed)
    ========  =======  =====================================

    Then the run stops. ``recovery_s`` is the time from the drop until the start of the first
    6-second window from which every later window meets the ``recovered`` thresholds (0: it never
    degraded; missing: it never recovered before the end).
    """

    scenario = "spike"
    defaults = {
        "users": 10,
        "ramp": 30.0,
        "multiplier": 5.0,
        "spike_duration": 30.0,
        "recovery": 60.0,
    }

    def __init__(self, params: ShapeParams | None = None):
        super().__init__(params)
        self.wants_timeline = True

    def build_stages(self, p: ShapeParams) -> list[Stage]:
        positive("users", p.users)
        positive("ramp (baseline time)", p.ramp)
        positive("spike duration", p.spike_duration)
        positive("spike recovery", p.recovery)
        if p.multiplier is None or p.multiplier <= 1:
            raise ValueError(f"spike multiplier must be greater than 1, got {p.multiplier!r}")
        peak = max(p.users + 1, round(p.users * p.multiplier))
        return [
            Stage(p.ramp, p.users, float(p.users), "baseline"),
            Stage(p.ramp + p.spike_duration, peak, float(peak), "spike"),
            Stage(p.ramp + p.spike_duration + p.recovery, p.users, float(peak), "recovery"),
        ]

    @property
    def drop_at(self) -> float:
        return self.stages()[1].until

    def windows(self) -> dict:
        baseline, spike, recovery = self.stages()
        return {
            "baseline": self.timeline.window(baseline.until / 4, baseline.until).summary(),
            "spike": self.timeline.window(baseline.until, spike.until).summary(),
            "after": self.timeline.window(spike.until, recovery.until).summary(),
        }

    def recovery(self) -> float | None:
        def healthy(window) -> bool:
            return all(r.passed for r in judge_window(self.thresholds, "recovered", window))

        return recovery_seconds(
            self.timeline, self.drop_at, self.stages()[-1].until, RECOVERY_WINDOW, healthy
        )

    def after_drop(self) -> list[dict]:
        """The trailing windows judged for recovery, so a reader can see the curve."""
        ends = [s.t for s in self.timeline.samples if s.t >= self.drop_at + RECOVERY_WINDOW]
        return [self.timeline.window(t - RECOVERY_WINDOW, t).summary() for t in ends]

    def report(self) -> dict:
        if self.timeline is None:
            return super().report()
        return {
            **super().report(),
            "windows": self.windows(),
            "recovery_s": self.recovery(),
            "after_drop": self.after_drop(),
        }

    def run_figures(self) -> tuple[dict, dict]:
        if self.timeline is None:
            return {}, {}
        seconds = self.recovery()
        return (
            {"recovery_s": seconds},
            {"recovery_s": "never met the recovered thresholds" if seconds is None else ""},
        )


SHAPE = SpikeShape
