"""Metrics scraped from real gunicorn with 4 workers: exact counts, labels, app and process data."""
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from tests.servers import ROOT, run_api
from tests.telemetry.live import FAST_ENV, access_lines, log_lines, scrape, sign_up, wait_for

pytestmark = pytest.mark.stack

WORKERS = 4
HEX32 = re.compile(r"[0-9a-f]{32}")
REQUIRED_BUCKETS = ("0.025", "0.05", "0.1", "0.3", "0.5", "1.0", "2.5", "5.0")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    # Recycling during the run (max_requests 60) must not cost a single count.
    env = {**FAST_ENV, "VIGIL_MAX_REQUESTS": "60", "VIGIL_MAX_REQUESTS_JITTER": "10",
           "VIGIL_LOCKOUT_THRESHOLD": "3"}
    with run_api(tmp_path_factory.mktemp("metrics"), workers=WORKERS, env=env) as server:
        yield server


def _get_many(urls, threads=8):
    # A fresh connection per request (no Session), so the kernel spreads them over workers.
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda u: requests.get(u, timeout=30).status_code, urls))


def test_request_counts_are_exact_across_workers(api):
    n = 400
    before = scrape(api)
    statuses = _get_many(f"{api.url}/api/v1/content/{uuid.uuid4()}" for _ in range(n))
    assert statuses == [401] * n

    def logged():
        return [line for line in access_lines(api) if line["route"] == "/api/v1/content/<id>"]

    # Access lines are written in batches (within a second, and when a worker exits): every
    # request gets exactly one, recycled workers included.
    assert wait_for(lambda: len(logged()) >= n, 15)
    assert len(logged()) == n
    served_by = {line["pid"] for line in logged()}
    assert len(served_by) >= 3, "requests were not spread over several workers"

    # Every worker may answer a scrape: each one must see the same, exact totals.
    labels = {"method": "GET", "route": "/api/v1/content/<id>", "status": "401"}
    total = {"method": "GET", "status": "401"}
    for _ in range(6):
        metrics = scrape(api)
        assert metrics.value("flask_http_request_duration_seconds_count", **labels) == n
        assert metrics.value("flask_http_request_duration_seconds_bucket",
                             le="+Inf", **labels) == n
        assert (metrics.value("flask_http_request_total", **total)
                - (before.value("flask_http_request_total", **total) or 0)) == n


def test_histogram_resolves_the_latency_objective(api):
    requests.get(f"{api.url}/api/v1/content/{uuid.uuid4()}", timeout=30)
    buckets = {labels["le"] for labels, _ in scrape(api).series(
        "flask_http_request_duration_seconds_bucket")}
    assert set(REQUIRED_BUCKETS) <= buckets


def test_route_label_is_the_template_and_unmatched_paths_share_one_label(api):
    before = scrape(api)
    ids = [str(uuid.uuid4()) for _ in range(7)]
    _get_many([f"{api.url}/api/v1/content/{i}" for i in ids])
    _get_many([f"{api.url}/no/such/{i}" for i in ids] + [f"{api.url}/api/v1/nope"])
    after = scrape(api)
    count = "flask_http_request_duration_seconds_count"
    routes = {labels["route"] for labels, _ in after.series(count)}
    assert not any(i in route for route in routes for i in ids)
    assert "/api/v1/content/<id>" in routes
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert after.value(count, **unmatched) - (before.value(count, **unmatched) or 0) == 8


def test_health_metrics_and_docs_are_not_counted(api):
    for path in ("/health/live", "/health/ready", "/metrics", "/api/v1/openapi.json",
                 "/api/v1/docs"):
        assert requests.get(f"{api.url}{path}", timeout=30).status_code == 200
    routes = {labels["route"] for labels, _ in scrape(api).series(
        "flask_http_request_duration_seconds_count")}
    assert not any(r.startswith(("/health", "/metrics", "/api/v1/docs", "/api/v1/openapi"))
                   for r in routes)


def test_unknown_methods_are_refused_and_mint_no_series(api):
    for method in ("FOO", "BAR", "BAZ"):
        r = requests.request(method, f"{api.url}/api/v1/content", timeout=30)
        assert r.status_code == 501 and r.headers["Content-Type"] == "application/problem+json"
        assert HEX32.fullmatch(r.headers["X-Request-ID"])
        assert r.json()["request_id"] == r.headers["X-Request-ID"]
    metrics = scrape(api)
    methods = {labels["method"] for name in ("flask_http_request_total",
                                             "flask_http_request_duration_seconds_count")
               for labels, _ in metrics.series(name)}
    assert not {"FOO", "BAR", "BAZ"} & methods


def test_auth_events_are_counted(api):
    before = scrape(api)
    email, password, tokens = sign_up(api)                              # login_success
    url = f"{api.url}/api/v1/auth"
    old_refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    new = requests.post(f"{url}/refresh", headers=old_refresh, timeout=30)  # refresh
    assert new.status_code == 200
    assert requests.post(f"{url}/refresh", headers=old_refresh,
                         timeout=30).status_code == 401                 # refresh_reuse
    _, _, other = sign_up(api)                                          # login_success
    requests.post(f"{url}/logout", timeout=30,
                  headers={"Authorization": f"Bearer {other['access_token']}"})  # logout
    for _ in range(3):                                                  # 3 x login_failure
        requests.post(f"{url}/login", json={"email": email, "password": "wrong-password-1"},
                      timeout=30)
    assert requests.post(f"{url}/login", json={"email": email, "password": password},
                         timeout=30).status_code == 429                 # lockout
    after = scrape(api)
    expected = {"login_success": 2, "refresh": 1, "refresh_reuse": 1, "logout": 1,
                "login_failure": 3, "lockout": 1}
    for event, count in expected.items():
        delta = (after.value("vigil_auth_events_total", event=event)
                 - before.value("vigil_auth_events_total", event=event))
        assert delta == count, event


def _sqlite(api):
    """A connection to the live API's SQLite file, closed on exit (``with connect()`` only
    commits, and Python 3.13 warns about the connection left open)."""
    path = api.env["VIGIL_DATABASE_URL"].removeprefix("sqlite:///")
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


def test_active_sessions_are_read_from_the_database(api):
    def in_db():
        with _sqlite(api) as db:
            return db.execute("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL"
                              " AND expires_at > datetime('now')").fetchone()[0]

    try:
        in_db()
    except sqlite3.OperationalError:
        pytest.fail("refresh session table not found; the test needs its real name")
    sign_up(api)
    assert scrape(api).value("vigil_active_sessions") == in_db() > 0
    # A change made outside this API process (another node, an operator) shows at once.
    with _sqlite(api) as db:
        db.execute("UPDATE sessions SET revoked_at = datetime('now')")
    assert scrape(api).value("vigil_active_sessions") == 0


def test_db_query_histogram_counts_statements(api):
    before = scrape(api).value("vigil_db_query_duration_seconds_count")
    sign_up(api)
    after = scrape(api)
    assert after.value("vigil_db_query_duration_seconds_count") > before
    assert after.value("vigil_db_errors_total") == 0


def test_build_info_names_version_and_revision(api):
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    info = scrape(api).series("vigil_build_info")
    assert info == [({"version": "0.1.0", "revision": revision}, 1.0)]


def test_process_metrics_cover_master_and_live_workers(api):
    metrics = scrape(api)
    cpu = {(labels["role"], int(labels["pid"])): v
           for labels, v in metrics.series("vigil_process_cpu_seconds_total")}
    rss = {(labels["role"], int(labels["pid"])): v
           for labels, v in metrics.series("vigil_process_resident_memory_bytes")}
    workers = {p.pid for p in psutil.Process(api.pid).children()}
    assert set(cpu) == set(rss) == {("master", api.pid)} | {("worker", p) for p in workers}
    assert len(workers) == WORKERS
    assert all(v > 0 for v in rss.values()) and all(v >= 0 for v in cpu.values())
    assert metrics.value("process_resident_memory_bytes") == sum(rss.values())
    # The summed counter also holds the CPU of workers already recycled.
    assert metrics.value("process_cpu_seconds_total") >= sum(cpu.values())


def test_dead_workers_leave_no_process_series(api):
    victim = psutil.Process(api.pid).children()[0].pid
    os.kill(victim, signal.SIGKILL)

    def replaced():
        children = {p.pid for p in psutil.Process(api.pid).children()}
        return len(children) == WORKERS and victim not in children

    assert wait_for(replaced, 30)
    pids = {int(labels["pid"]) for labels, _ in scrape(api).series(
        "vigil_process_cpu_seconds_total")}
    assert victim not in pids and len(pids) == WORKERS + 1


def test_database_errors_are_counted_and_are_not_exceptions(tmp_path):
    with run_api(tmp_path, workers=2, env=FAST_ENV) as server:
        sign_up(server)
        before = scrape(server)
        # Swap the database for an empty one: every statement now fails.
        db_path = server.env["VIGIL_DATABASE_URL"].removeprefix("sqlite:///")
        os.rename(db_path, db_path + ".away")
        login = {"email": "x@example.com", "password": "whatever-password"}
        statuses = [requests.post(f"{server.url}/api/v1/auth/login", json=login,
                                  timeout=30).status_code for _ in range(5)]
        assert statuses == [503] * 5
        after = scrape(server)
        assert after.value("vigil_db_errors_total") - before.value("vigil_db_errors_total") >= 5
        # A 503 for a database outage is an answer the API chose, not a crash.
        assert after.series("flask_http_request_exceptions_total") == []
        # The scrape itself survives a broken database: it just lacks the session gauge.
        assert after.value("vigil_active_sessions") is None
        assert after.value("vigil_build_info", version="0.1.0",
                           revision=after.series("vigil_build_info")[0][0]["revision"]) == 1


def test_exceptions_count_crashes_only(tmp_path):
    """A view that raises is a 500 and one exception; JWT refusals (401) are not exceptions."""
    with run_api(tmp_path, workers=2, env=FAST_ENV, app="tests.telemetry.crash_app:app") as server:
        for _ in range(3):
            r = requests.get(f"{server.url}/api/v1/test/crash", timeout=30)
            assert r.status_code == 500 and "problem+json" in r.headers["Content-Type"]
        for _ in range(5):
            assert requests.get(f"{server.url}/api/v1/users/me", timeout=30,
                                headers={"Authorization": "Bearer bad"}).status_code == 401
        metrics = scrape(server)
        assert metrics.series("flask_http_request_exceptions_total") == [
            ({"method": "GET", "status": "500"}, 3.0)]
        assert metrics.value("flask_http_request_total", method="GET", status="401") == 5
        # Flask logged each crash, with its trace, as one JSON line.
        crashes = [x for x in log_lines(server) if "a bug in a view" in x.get("exc_info", "")]
        assert len(crashes) == 3


def test_docs_list_every_exposed_metric_with_its_labels(api):
    rows = re.findall(r"^\| `([a-z_]+)` \| (\w+) \|\s*([a-z_, ]*?)\s*\|",
                      (ROOT / "docs/metrics.md").read_text(), re.MULTILINE)
    documented = {name: {label.strip() for label in labels.split(",") if label.strip()}
                  for name, _type, labels in rows}
    exposed = {}
    for name, labels in scrape(api):
        if name.startswith(("flask_http_request_duration", "vigil_db_query_duration")):
            for suffix in ("_bucket", "_count", "_sum"):
                name = name.removesuffix(suffix)
        exposed.setdefault(name, set()).update(k for k, _ in labels if k != "le")
    assert set(exposed) <= set(documented), set(exposed) - set(documented)
    for name, labels in exposed.items():
        assert labels == documented[name], (name, labels, documented[name])
