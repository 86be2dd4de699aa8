"""Fault switches for fire drills (placeholder until the telemetry issue lands)."""


def init_app(app):
    """Register the fault hooks and the ``flask faults`` command on ``app``."""
