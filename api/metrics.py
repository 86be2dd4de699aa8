"""Prometheus metrics for the API (placeholder until the telemetry issue lands)."""


def init_app(app):
    """Register metrics on ``app``."""
