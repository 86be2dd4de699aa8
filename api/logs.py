"""Structured JSON logging for the API (placeholder until the telemetry issue lands)."""


def init_app(app):
    """Configure JSON logging for ``app``."""
