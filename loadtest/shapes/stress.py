"""The stress scenario: add users step by step beyond capacity, stop when a step breaks."""

from __future__ import annotations

from collections.abc import Callable

from ..params import ShapeParams
from ..thresholds import judge_window
from .staged import Stage, StagedShape, positive


class StressShape(StagedShape):
    """Steps of ``step_users`` more users every ``step_duration`` until a step breaks its ``step``
    thresholds (or ``max_steps`` is reached). The capacity reported is the last step that held.

    Stages (cumulative; defaults step_users=10, step_duration=60 s, max_steps=10):

    ========  =======  ==============================================
    until     users    spawn rate
    ========  =======  ==============================================
    60 s      10       10/15 s = 0.67/s (new users spread over 1/4 step)
    120 s     20       0.67/s
    ...       ...      ...
    600 s     100      0.67/s
    ========  =======  ==============================================

    Each step is judged when it ends, over its second half: new users spawn and log in
    (argon2id, on purpose expensive) during the first quarter, and that burst is not the
    steady state the step measures. Their accounts were prepared before the first step
    (``--accounts prepared``), so no step measures a burst of registrations. When a step
    fails, the run stops at once: ``held_users`` is the user count of the step before it (0 if
    the first step already failed).
    """

    scenario = "stress"
    defaults = {"step_users": 10, "step_duration": 60.0, "max_steps": 10}

    def __init__(
        self,
        params: ShapeParams | None = None,
        judge: Callable[[int, float, float], bool] | None = None,
    ):
        super().__init__(params)
        self.wants_timeline = True
        self._judge = judge
        self.restart()

    def restart(self) -> None:
        self.judged = 0  # steps judged so far
        self.held_users = 0
        self.broke_at: int | None = None  # users of the step that failed
        self.steps: list[dict] = []

    def build_stages(self, p: ShapeParams) -> list[Stage]:
        positive("stress step users", p.step_users)
        positive("stress step duration", p.step_duration)
        positive("stress max steps", p.max_steps)
        rate = p.step_users / max(1.0, p.step_duration / 4)
        return [
            Stage((k + 1) * p.step_duration, (k + 1) * p.step_users, rate, f"step {k + 1}")
            for k in range(p.max_steps)
        ]

    def judge_step(self, index: int, start: float, end: float) -> bool:
        """Whether step ``index`` (0-based) met the ``step`` thresholds over [start, end]."""
        if self._judge is not None:
            return self._judge(index, start, end)
        window = self.timeline.window(start + (end - start) / 2, end)
        results = judge_window(self.thresholds, "step", window)
        self.steps.append(
            {
                "step": index + 1,
                "users": self.stages()[index].users,
                "passed": all(r.passed for r in results),
                **window.summary(),
            }
        )
        return all(r.passed for r in results)

    def tick_at(self, t: float):
        stages = self.stages()
        if self.broke_at is not None:
            return None
        while self.judged < len(stages) and t >= stages[self.judged].until:
            stage = stages[self.judged]
            start = stages[self.judged - 1].until if self.judged else 0.0
            if not self.judge_step(self.judged, start, stage.until):
                self.broke_at = stage.users
                return None
            self.held_users = stage.users
            self.judged += 1
        return super().tick_at(t)

    def report(self) -> dict:
        return {
            **super().report(),
            "steps": self.steps,
            "held_users": self.held_users,
            "broke_at_users": self.broke_at,
        }

    def run_figures(self) -> tuple[dict, dict]:
        note = (
            f"broke at {self.broke_at} users"
            if self.broke_at is not None
            else f"no step broke in {self.judged} judged steps"
        )
        return {"held_users": float(self.held_users)}, {"held_users": note}


SHAPE = StressShape
