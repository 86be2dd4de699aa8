"""Vigil's telemetry: JSON logs, request context, Prometheus metrics, multiprocess housekeeping.

One job per module:
- ``context``: request and trace ids, X-Request-ID, the facts the access line reads;
- ``logs``: python-json-logger's formatter and the app's log handler;
- ``access``: gunicorn's logger (JSON error lines, batched access lines);
- ``metrics``: prometheus-flask-exporter's HTTP metrics, the ``vigil_*`` metrics, /metrics;
- ``collectors``: values computed at scrape time (sessions, readiness, faults, processes);
- ``metrics_directory``: the gunicorn run's multiprocess directory (standard library only);
- ``multiprocess``: the dead-worker archive and the scrape's merge of every worker's files.
Telemetry listens to the domain (api/events.py); the domain never imports telemetry.
"""


def init_app(app):
    """JSON logging always; request context and metrics unless ``VIGIL_TELEMETRY=off``."""
    # Imported here, not above: gunicorn.conf.py imports api.telemetry.metrics_directory
    # before prometheus_client may be imported, and importing this package must not load it.
    from flask.logging import default_handler

    from api.telemetry import context, metrics
    from api.telemetry.logs import configure_root_logging

    configure_root_logging(app.config["LOG_LEVEL"], env=app.config["ENV"])
    app.logger.removeHandler(default_handler)
    if app.config["TELEMETRY"] == "off":
        return
    # First: these hooks must run before any other before_request hook of the app.
    context.init_app(app)
    metrics.init_app(app)
