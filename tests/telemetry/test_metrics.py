"""api.telemetry's metrics in one process (the test client): what is counted, and per app."""
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from api.db import close_database, database
from api.faults import set_switch
from api.migrate import upgrade
from tests.conftest import FAST_ARGON2


def scrape(client):
    """(sample name, frozenset of labels) -> value, from one GET /metrics."""
    r = client.get("/metrics")
    assert r.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.get_data(as_text=True))
            for s in family.samples}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def crash_route(app):
    def crash():
        raise RuntimeError("a bug in a view")

    app.add_url_rule("/api/v1/test/crash", "crash", crash)
    return "/api/v1/test/crash"


def test_an_exception_that_became_a_500_is_counted(client, crash_route):
    for _ in range(3):
        r = client.get(crash_route)
        assert r.status_code == 500 and r.mimetype == "application/problem+json"
        assert "a bug in a view" not in r.get_data(as_text=True)
    samples = scrape(client)
    assert value(samples, "flask_http_request_exceptions_total", method="GET", status="500") == 3
    assert value(samples, "flask_http_request_total", method="GET", status="500") == 3
    assert value(samples, "flask_http_request_duration_seconds_count", method="GET",
                 status="500", route="/api/v1/test/crash") == 3


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
def test_jwt_refusals_are_not_exceptions(client, headers):
    """flask-jwt-extended raises for a missing or bad token; its handler answers 401. Those
    are refusals, not crashes (the dashboard's exceptions panel says each became a 500)."""
    for _ in range(4):
        assert client.get("/api/v1/users/me", headers=headers).status_code == 401
    samples = scrape(client)
    assert value(samples, "flask_http_request_total", method="GET", status="401") == 4
    assert not [k for k, v in samples.items()
                if k[0] == "flask_http_request_exceptions_total" and v]


# SQLite only: the test takes the database away by deleting its file under the app.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_database_unavailable_is_a_db_error_not_an_exception(app, client, backend):
    db_path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
    import os

    os.remove(db_path)
    r = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "x" * 12})
    assert r.status_code == 503
    samples = scrape(client)
    assert value(samples, "vigil_db_errors_total") >= 1
    assert not [k for k, v in samples.items()
                if k[0] == "flask_http_request_exceptions_total" and v]


def test_scrapes_do_not_inject_readiness_faults(app, client):
    """/metrics reports vigil_ready from the readiness checks, which have no side effects:
    only a /health/ready answered while the switch is on counts as an injected fault."""
    with app.app_context():
        set_switch("readiness", 1.0, timedelta(minutes=1))
    for _ in range(5):
        samples = scrape(client)
        assert value(samples, "vigil_ready") == 0
        assert value(samples, "vigil_fault_active", kind="readiness") == 1
        assert value(samples, "vigil_faults_injected_total", kind="readiness") == 0
    for _ in range(2):
        assert client.get("/health/ready").status_code == 503
    assert value(scrape(client), "vigil_faults_injected_total", kind="readiness") == 2


def test_unknown_methods_are_refused_before_the_app_and_mint_no_series(client):
    for method in ("FOO", "BAR", "PROPFIND"):
        r = client.open("/api/v1/content", method=method, headers={"X-Request-ID": "m-1"})
        assert r.status_code == 501 and r.mimetype == "application/problem+json"
        assert r.headers["X-Request-ID"] == "m-1" and r.json["request_id"] == "m-1"
    methods = {dict(labels).get("method") for name, labels in scrape(client)
               if name.startswith("flask_http_request")}
    assert not {"FOO", "BAR", "PROPFIND"} & methods


def test_health_metrics_and_docs_are_not_counted(client):
    for path in ("/health/live", "/health/ready", "/metrics", "/api/v1/openapi.json",
                 "/api/v1/docs", "/api/v1/docs/assets/swagger-ui.css"):
        with client.get(path) as r:  # closes the file a static asset is sent from
            assert r.status_code == 200, path
    assert not [k for k in scrape(client) if k[0].startswith("flask_http_request")]


def _app(tmp_path, name):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / name}",
                      "JWT_SECRET_KEY": "s" * 40, **FAST_ARGON2})
    with app.app_context():
        upgrade()
    return app


def test_a_second_app_neither_closes_nor_shares_the_first_ones_state(tmp_path):
    first = _app(tmp_path, "first.db")
    first_client = first.test_client()
    r = first_client.post("/api/v1/auth/register",
                          json={"email": "one@example.com", "password": "x" * 12})
    assert r.status_code == 201
    second = _app(tmp_path, "second.db")
    try:
        # The first app still works on its own database; the second one sees only its own.
        with first.app_context():
            assert database.obj is first.extensions["vigil_database"]
            assert database.execute_sql("SELECT COUNT(*) FROM users").fetchone()[0] == 1
        with second.app_context():
            assert database.execute_sql("SELECT COUNT(*) FROM users").fetchone()[0] == 0
        second.test_client().get("/api/v1/users/me")
        # Each app counts its own requests and events, in its own registry.
        assert value(scrape(first_client), "vigil_auth_events_total", event="login_success") == 0
        assert value(scrape(first_client), "flask_http_request_total",
                     method="POST", status="201") == 1
        assert value(scrape(second.test_client()), "flask_http_request_total",
                     method="POST", status="201") is None
    finally:
        close_database(first)
        close_database(second)


def test_pool_gauges_appear_on_the_first_report_and_follow_each_change():
    from prometheus_client import CollectorRegistry

    from api.telemetry.metrics import AppMetrics

    registry = CollectorRegistry()
    metrics = AppMetrics(registry)

    def gauges():
        return {state: registry.get_sample_value("vigil_db_pool_connections", {"state": state})
                for state in ("in_use", "idle", "max")}

    metrics.update_pool(None)  # SQLite: no pool, no series
    assert gauges() == {"in_use": None, "idle": None, "max": None}
    steps = [{"in_use": 0, "idle": 0, "max": 5},  # first report: every state
             {"in_use": 1, "idle": 0, "max": 5},  # a request checks a connection out
             {"in_use": 0, "idle": 1, "max": 5},  # and back
             {"in_use": 0, "idle": 1, "max": 5},  # unchanged
             {"in_use": 1, "idle": 2, "max": 5},
             {"in_use": 0, "idle": 0, "max": 5}]  # the pool closed its stale connections
    for stats in steps:
        metrics.update_pool(stats)
        assert gauges() == stats


def test_a_forked_worker_writes_every_pool_state_though_the_master_reported_the_same(
    monkeypatch,
):
    import os

    from prometheus_client import CollectorRegistry

    from api.telemetry.metrics import AppMetrics

    registry = CollectorRegistry()
    metrics = AppMetrics(registry)
    stats = {"in_use": 0, "idle": 1, "max": 5}
    metrics.update_pool(stats)  # the master, before gunicorn forks (VIGIL_PRELOAD=on)
    # In the worker, its own metric file starts empty: here, a value the master never set.
    metrics.pool.labels("max").set(0)
    monkeypatch.setattr(os, "getpid", lambda: os.getppid() + 100_000)
    metrics.update_pool(stats)
    assert registry.get_sample_value("vigil_db_pool_connections", {"state": "max"}) == 5
