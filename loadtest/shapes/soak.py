"""The soak scenario: steady load for a long time, to surface leaks, drift and slow exhaustion."""

from __future__ import annotations

from ..params import ShapeParams
from .staged import Stage, StagedShape, ramp_hold_down


class SoakShape(StagedShape):
    """The load target held for hours; its thresholds are the load ones, judged over the whole run.

    Stages (cumulative; defaults users=20, ramp=120 s, duration=3600 s):

    ==========  =======  ============================
    until       users    spawn rate
    ==========  =======  ============================
    120 s       20       20/120 = 0.17/s (ramp-up)
    3,720 s     20       0.17/s (hold)
    3,840 s     0        0.17/s (ramp-down)
    ==========  =======  ============================

    Then the run stops. Raise ``--load-duration`` (e.g. ``8h``) for a longer soak.
    """

    scenario = "soak"
    defaults = {"users": 20, "ramp": 120.0, "duration": 3600.0}

    def build_stages(self, p: ShapeParams) -> list[Stage]:
        return ramp_hold_down(p.users, p.ramp, p.duration)


SHAPE = SoakShape
