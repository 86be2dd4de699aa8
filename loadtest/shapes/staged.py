"""The common machinery of Vigil's shapes: cumulative stages on the shape's own clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from locust import LoadTestShape

from ..params import ShapeParams, shape_params


@dataclass(frozen=True)
class Stage:
    """Until ``until`` s after the start (cumulative), run ``users`` reached at ``spawn_rate``."""

    until: float
    users: int
    spawn_rate: float
    label: str


class StagedShape(LoadTestShape):
    """A shape defined by a list of cumulative stages; subclasses build the list from params."""

    abstract = True
    # Lets --run-time pass without Locust's "ignored" warning; the shapes ignore -u/-r and use
    # --load-users and friends instead, and the locustfile adds its own hard time bound.
    use_common_options = True
    defaults: ClassVar[dict] = {}
    scenario: ClassVar[str] = ""

    def __init__(self, params: ShapeParams | None = None):
        super().__init__()
        self._params = params
        self._stages: list[Stage] | None = None
        self.timeline = None  # a Timeline, fed by the locustfile when the shape asks for one
        self.thresholds: list = []
        self.wants_timeline = False
        # True while the locustfile prepares accounts: Locust's local runner keeps ticking
        # meanwhile, and the shape must not move past its first stage or judge anything.
        self.holding = False

    @property
    def params(self) -> ShapeParams:
        if self._params is None:
            options = self.runner.environment.parsed_options if self.runner else None
            self._params = shape_params(options)
        return self._params.merged(self.defaults)

    def stages(self) -> list[Stage]:
        if self._stages is None:
            self._stages = self.build_stages(self.params)
            if not self._stages:
                raise ValueError(f"{self.scenario}: the parameters give no stage to run")
        return self._stages

    def build_stages(self, p: ShapeParams) -> list[Stage]:
        raise NotImplementedError

    def restart(self) -> None:
        """Forget what an earlier run decided (the web UI can start several runs)."""

    def planned_duration(self) -> float:
        """How long the run lasts when nothing stops it early."""
        return self.stages()[-1].until

    def stage_at(self, t: float) -> Stage | None:
        return next((s for s in self.stages() if t < s.until), None)

    def tick_at(self, t: float):
        """(users, spawn_rate) at ``t`` seconds into the run, None once the last stage is over."""
        stage = self.stage_at(t)
        return None if stage is None else (stage.users, stage.spawn_rate)

    def tick(self):
        return self.tick_at(0.0 if self.holding else self.get_run_time())

    def report(self) -> dict:
        """Scenario-specific figures for the JSON report."""
        return {"stages": [s.__dict__ for s in self.stages()]}

    def run_figures(self) -> tuple[dict, dict]:
        """Run-level figures for ``run`` thresholds, and notes explaining them."""
        return {}, {}


def positive(name: str, value) -> None:
    if value is None or value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {value!r}")


def ramp_hold_down(users: int, ramp: float, hold: float) -> list[Stage]:
    """Ramp to ``users`` over ``ramp`` s, hold ``hold`` s, ramp back to 0 over ``ramp`` s."""
    positive("users", users)
    positive("duration", hold)
    rate = users / ramp if ramp > 0 else float(users)
    up = ramp if ramp > 0 else 0.0
    stages = [Stage(up + hold, users, rate, "hold")]
    if ramp > 0:
        stages.insert(0, Stage(up, users, rate, "ramp-up"))
        stages.append(Stage(up + hold + ramp, 0, rate, "ramp-down"))
    return stages
