"""Prometheus metrics of one app: HTTP requests, Vigil's own metrics, and GET /metrics.

HTTP request metrics are prometheus-flask-exporter's defaults, configured through its
documented options: its gunicorn multiprocess class under gunicorn, ``group_by`` the route
template, the paths that are not API traffic excluded, Vigil's latency buckets. Vigil's own
metrics (``vigil_*``) live in the same registry and are updated from the domain's signals
(api/events.py). ``/metrics`` merges every worker's files (api.telemetry.multiprocess) and
adds the values computed at scrape time (api.telemetry.collectors).
"""
import importlib.metadata
import os
import subprocess
from pathlib import Path

from flask import request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from api import events
from api.config import NOT_API_TRAFFIC
from api.db import pool_stats
from api.faults import FAULT_KINDS
from api.telemetry import metrics_directory, multiprocess
from api.telemetry.collectors import ScrapeTimeCollector
from api.telemetry.context import route

#: Resolve the 300 ms latency objective exactly (0.3 is a bucket boundary).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
AUTH_EVENTS = ("login_success", "login_failure", "lockout", "refresh", "refresh_reuse", "logout")
POOL_STATES = ("in_use", "idle", "max")


class AppMetrics:
    """Vigil's own metrics of one app, registered in the exporter's registry."""

    def __init__(self, registry):
        self.auth_events = Counter(
            "vigil_auth_events_total", "Authentication events", ("event",), registry=registry)
        self.db_duration = Histogram(
            "vigil_db_query_duration_seconds", "SQL statement duration in seconds",
            buckets=DB_BUCKETS, registry=registry)
        self.db_errors = Counter(
            "vigil_db_errors_total", "SQL statements the database rejected or failed",
            registry=registry)
        self.pool = Gauge(
            "vigil_db_pool_connections", "Database pool connections by state",
            ("state",), multiprocess_mode="livesum", registry=registry)
        self.faults_injected = Counter(
            "vigil_faults_injected_total", "Faults injected by the fire-drill switches",
            ("kind",), registry=registry)
        # Series that alerts and dashboards divide by must exist before the first event.
        for event in AUTH_EVENTS:
            self.auth_events.labels(event)
        for kind in FAULT_KINDS:
            self.faults_injected.labels(kind)
        self.last_pool = {}  # pool gauges appear once a pooled database reports
        self._pool_states = {}  # state -> its labelled gauge, made on the first report
        self._pool_pid = os.getpid()

    def update_pool(self, stats):
        """Set the pool gauges whose value changed since the last update (every request
        changes two: a connection goes from idle to in use and back)."""
        if stats is None:
            return
        if self._pool_pid != os.getpid():
            # A forked gunicorn worker (VIGIL_PRELOAD) writes its own metric files: all of
            # its states are new there, whatever the master last reported.
            self._pool_pid, self.last_pool = os.getpid(), {}
        if stats == self.last_pool:
            return
        if not self._pool_states:
            self._pool_states = {state: self.pool.labels(state) for state in POOL_STATES}
        for state, gauge in self._pool_states.items():
            if stats[state] != self.last_pool.get(state):
                gauge.set(stats[state])
        self.last_pool = stats


def _git_revision():
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return "unknown"
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def build_info(app):
    """(version, revision): the installed package version and the git commit deployed."""
    try:
        version = importlib.metadata.version("vigil")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return version, app.config["REVISION"] or _git_revision()


def _exporter(registry):
    options = {"path": None,  # Vigil serves /metrics itself (metrics_endpoint)
               "registry": registry, "group_by": route, "buckets": REQUEST_BUCKETS,
               "excluded_paths": NOT_API_TRAFFIC}
    if metrics_directory.current():
        return GunicornInternalPrometheusMetrics.for_app_factory(**options)
    return PrometheusMetrics.for_app_factory(**options)


def init_app(app):
    """Request metrics, the vigil_* metrics and GET /metrics on ``app``."""
    registry = CollectorRegistry()
    exporter = _exporter(registry)
    exporter.init_app(app)
    metrics = AppMetrics(registry)
    version, revision = build_info(app)
    exporter.info("vigil_build_info", "Version and git revision of the API",
                  version=version, revision=revision)
    app.extensions["vigil_metrics"] = metrics

    def count_auth_event(sender, event=None, **_):
        if event in AUTH_EVENTS:
            metrics.auth_events.labels(event).inc()

    def count_fault(sender, kind=None, **_):
        metrics.faults_injected.labels(kind).inc()

    database = app.extensions["vigil_database"]
    pooled = pool_stats(database) is not None
    observe = metrics.db_duration.observe

    def time_statement(sender, duration=0.0, failed=False, **_):
        # Runs for every SQL statement: one observe, and the pool gauges only where a
        # pool exists (SQLite has none).
        observe(duration)
        if failed:
            metrics.db_errors.inc()
        if pooled:
            metrics.update_pool(pool_stats(database))

    events.auth_event.connect(count_auth_event, sender=app, weak=False)
    events.fault_injected.connect(count_fault, sender=app, weak=False)
    events.query_executed.connect(time_statement, sender=database, weak=False)
    if pooled:
        # App-context teardowns run in reverse order of registration, and create_app sets
        # up telemetry before the database's teardown: this runs after the connection went
        # back to the pool, so the gauges show the pool as it is between requests.
        app.teardown_appcontext(lambda exc: metrics.update_pool(pool_stats(database)))

    path = metrics_directory.current()
    collector = ScrapeTimeCollector(app, under_gunicorn=path is not None)
    if path:
        # prometheus_client's multiprocess recipe: a registry made for the exposition.
        exposition = CollectorRegistry()
        exposition.register(multiprocess.ArchiveAwareCollector(path))
        exposition.register(collector)
    else:
        exposition = registry
        exposition.register(collector)

    def metrics_endpoint():
        """Every metric, in the format the scraper asked for (Prometheus text or OpenMetrics)."""
        encode, content_type = choose_encoder(request.headers.get("Accept"))
        return encode(exposition), 200, {"Content-Type": content_type}

    app.add_url_rule("/metrics", "metrics", metrics_endpoint)
