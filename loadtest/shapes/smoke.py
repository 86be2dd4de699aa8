"""The smoke scenario: a couple of users for about a minute, to prove the service works at all."""

from __future__ import annotations

from ..params import ShapeParams
from .staged import Stage, StagedShape, positive


class SmokeShape(StagedShape):
    """A few users, started together, for a short fixed time. With the default 3 users Locust's
    weighting gives one reader, one writer and one session, so every persona runs once.

    Stages (cumulative; defaults users=3, duration=60 s):

    ========  =================  ==========================
    until     users              spawn rate
    ========  =================  ==========================
    60 s      3                  3/s (all at once)
    ========  =================  ==========================

    Then the run stops.
    """

    scenario = "smoke"
    defaults = {"users": 3, "duration": 60.0}

    def build_stages(self, p: ShapeParams) -> list[Stage]:
        positive("users", p.users)
        positive("duration", p.duration)
        return [Stage(p.duration, p.users, float(p.users), "steady")]


SHAPE = SmokeShape
