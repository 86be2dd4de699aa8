"""The load scenario: the expected production load, reached gradually, held, and released."""

from __future__ import annotations

from ..params import ShapeParams
from .staged import Stage, StagedShape, ramp_hold_down


class LoadShape(StagedShape):
    """Ramp to the target, hold it, ramp down.

    Stages (cumulative; defaults users=20, ramp=60 s, duration=300 s):

    ========  =======  ===========================
    until     users    spawn rate
    ========  =======  ===========================
    60 s      20       20/60 = 0.33/s (ramp-up)
    360 s     20       0.33/s (hold)
    420 s     0        0.33/s (ramp-down)
    ========  =======  ===========================

    Then the run stops. With ramp=0 the users start at once and the run ends after the hold.
    """

    scenario = "load"
    defaults = {"users": 20, "ramp": 60.0, "duration": 300.0}

    def build_stages(self, p: ShapeParams) -> list[Stage]:
        return ramp_hold_down(p.users, p.ramp, p.duration)


SHAPE = LoadShape
