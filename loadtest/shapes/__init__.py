"""One LoadTestShape per scenario, one scenario per module; ``shape_class`` picks one by name."""

from __future__ import annotations

import importlib

from ..params import SCENARIOS


def shape_class(scenario: str):
    """The shape class of ``scenario`` (imported on demand so a locustfile exposes only one)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    return importlib.import_module(f"{__name__}.{scenario}").SHAPE
