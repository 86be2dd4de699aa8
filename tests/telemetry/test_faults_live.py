"""Fault switches against real gunicorn: obeyed by every worker, counted, logged, expiring."""
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.servers import base_env, run_api, run_flask
from tests.telemetry.live import FAST_ENV, log_lines, scrape, wait_for

pytestmark = pytest.mark.stack

WORKERS = 4
OBEY_WITHIN = 5.0  # seconds; the promise is "within a few seconds" (each worker polls every 2 s)
INJECTED = "https://vigil.invalid/problems/injected-fault"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with run_api(tmp_path_factory.mktemp("faults"), workers=WORKERS, env=FAST_ENV) as server:
        yield server


@pytest.fixture(autouse=True)
def cleared(api):
    api.flask("faults", "clear", check=True)
    yield
    api.flask("faults", "clear", check=True)


def _burst(api, n=40, path=None):
    """n concurrent GETs on fresh connections (spread over workers): [(status, json)]."""
    def one(_):
        r = requests.get(f"{api.url}{path or f'/api/v1/content/{uuid.uuid4()}'}", timeout=30)
        return r.status_code, r.headers.get("Content-Type", ""), r.text

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _injected(responses):
    return sum(1 for status, _, text in responses if status == 500 and INJECTED in text)


def _status(api):
    done = api.flask("faults", "status", "--json", check=True)
    return {row["kind"]: row for row in json.loads(done.stdout)}


def test_off_by_default(api):
    assert _status(api) == {}
    assert _injected(_burst(api)) == 0
    metrics = scrape(api)
    for kind in ("error", "latency", "readiness"):
        assert metrics.value("vigil_fault_active", kind=kind) == 0
    assert metrics.value("vigil_ready") == 1
    assert requests.get(f"{api.url}/health/ready", timeout=30).status_code == 200


def test_error_switch_is_obeyed_by_every_worker_counted_and_logged(api):
    before = scrape(api).value("vigil_faults_injected_total", kind="error")
    logged_before = sum(1 for x in log_lines(api) if x.get("fault") == "error"
                        and x["message"] == "fault injected")
    started = time.monotonic()
    assert api.flask("faults", "error", "--ratio", "1", "--for", "2m").returncode == 0
    assert wait_for(lambda: _injected(_burst(api, 40)) == 40, OBEY_WITHIN + 2)
    assert time.monotonic() - started < OBEY_WITHIN + 2
    seen = []
    for _ in range(3):
        seen += _burst(api, 40)
    assert _injected(seen) == len(seen)  # every worker, every request
    assert all(ctype.startswith("application/problem+json") for _, ctype, _ in seen)
    # Exactly as many counted and logged as the clients saw (earlier bursts included).
    metrics = scrape(api)
    assert metrics.value("vigil_fault_active", kind="error") == 1
    injected = metrics.value("vigil_faults_injected_total", kind="error") - before
    logged = sum(1 for x in log_lines(api) if x.get("fault") == "error"
                 and x["message"] == "fault injected") - logged_before
    assert injected == logged >= len(seen)
    # They are ordinary 500s to the request metrics, so error-rate alerts fire.
    assert metrics.value("flask_http_request_duration_seconds_count", method="GET",
                         status="500", route="/api/v1/content/<id>") >= len(seen)
    # An injected error is an answer, not a crash: no exception is counted.
    assert metrics.series("flask_http_request_exceptions_total") == []
    # Health, metrics and docs stay untouched.
    for path in ("/health/live", "/health/ready", "/metrics", "/api/v1/openapi.json"):
        assert requests.get(f"{api.url}{path}", timeout=30).status_code == 200


def test_error_ratio_is_a_fraction_of_requests(api):
    assert api.flask("faults", "error", "--ratio", "0.5", "--for", "2m").returncode == 0
    time.sleep(OBEY_WITHIN)
    responses = _burst(api, 400)
    # Binomial(400, 0.5): 0.38..0.62 is over 4.5 standard deviations wide.
    assert 0.38 <= _injected(responses) / 400 <= 0.62
    assert {s for s, _, _ in responses} <= {401, 500}


def test_clear_ends_the_fault_everywhere(api):
    api.flask("faults", "error", "--ratio", "1", "--for", "10m", check=True)
    assert wait_for(lambda: _injected(_burst(api, 20)) == 20, OBEY_WITHIN + 2)
    api.flask("faults", "clear", "error", check=True)
    assert _status(api) == {}
    assert wait_for(lambda: _injected(_burst(api, 40)) == 0, OBEY_WITHIN + 2)


def test_a_switch_expires_by_itself(api):
    api.flask("faults", "error", "--ratio", "1", "--for", "4s", check=True)
    assert wait_for(lambda: _injected(_burst(api, 20)) == 20, OBEY_WITHIN)
    # No clear: at the latest 4 s after it was set (plus one poll), it is off.
    assert wait_for(lambda: _injected(_burst(api, 40)) == 0, 4 + OBEY_WITHIN)
    assert _status(api) == {}
    assert scrape(api).value("vigil_fault_active", kind="error") == 0


def test_latency_switch_slows_requests_and_is_counted(api):
    before = scrape(api).value("vigil_faults_injected_total", kind="latency")
    api.flask("faults", "latency", "--ms", "400", "--for", "1m", check=True)
    time.sleep(OBEY_WITHIN)
    url = f"{api.url}/api/v1/content/{uuid.uuid4()}"
    timings = []
    for _ in range(8):
        started = time.monotonic()
        assert requests.get(url, timeout=30).status_code == 401
        timings.append(time.monotonic() - started)
    assert min(timings) >= 0.4
    metrics = scrape(api)
    assert metrics.value("vigil_fault_active", kind="latency") == 1
    assert metrics.value("vigil_faults_injected_total", kind="latency") - before >= 8
    # The request histogram sees it: nothing of these 8 fits in the 0.3 s bucket.
    labels = {"method": "GET", "status": "401", "route": "/api/v1/content/<id>"}
    slow = (metrics.value("flask_http_request_duration_seconds_count", **labels)
            - metrics.value("flask_http_request_duration_seconds_bucket", le="0.3", **labels))
    assert slow >= 8
    # Health is never slowed: load balancers must see the truth about the process.
    started = time.monotonic()
    requests.get(f"{api.url}/health/live", timeout=30)
    assert time.monotonic() - started < 0.4


def test_readiness_switch_fails_readiness_only(api):
    before = scrape(api).value("vigil_faults_injected_total", kind="readiness")
    api.flask("faults", "readiness", "--for", "1m", check=True)

    refused = []  # every 503 /health/ready gave (a Response of a 503 is falsy: kept aside)

    def not_ready():
        r = requests.get(f"{api.url}/health/ready", timeout=30)
        if r.status_code == 503:
            refused.append(r)
        return bool(refused)

    assert wait_for(not_ready, OBEY_WITHIN)
    assert "readiness fault switch is on" in refused[0].json()["detail"]
    assert requests.get(f"{api.url}/health/live", timeout=30).status_code == 200
    assert _injected(_burst(api, 20)) == 0

    # Scrapes read readiness without injecting anything: only /health/ready answers count,
    # and only they log "fault injected".
    def readiness_logged():
        return sum(1 for x in log_lines(api) if x.get("fault") == "readiness")

    time.sleep(OBEY_WITHIN)  # now every worker has seen the switch
    refused += [r for r in (requests.get(f"{api.url}/health/ready", timeout=30)
                            for _ in range(8)) if r.status_code == 503]
    counted = scrape(api).value("vigil_faults_injected_total", kind="readiness") - before
    logged = readiness_logged()
    for _ in range(6):
        metrics = scrape(api)
        assert metrics.value("vigil_fault_active", kind="readiness") == 1
        assert metrics.value("vigil_ready") == 0
    assert metrics.value("vigil_faults_injected_total", kind="readiness") - before == counted
    assert readiness_logged() == logged
    # Each 503 from /health/ready is one injected fault, counted and logged once (a worker
    # that had not seen the switch yet answered 200 and counted nothing).
    assert counted == logged == len(refused) >= 2
    api.flask("faults", "clear", "readiness", check=True)
    assert wait_for(lambda: requests.get(f"{api.url}/health/ready", timeout=30)
                    .status_code == 200, OBEY_WITHIN)
    assert wait_for(lambda: scrape(api).value("vigil_ready") == 1, OBEY_WITHIN)


def test_status_shows_what_is_on(api):
    api.flask("faults", "latency", "--ms", "250", "--ratio", "0.25", "--for", "90s", check=True)
    api.flask("faults", "error", "--ratio", "0.1", "--for", "1h30m", check=True)
    rows = _status(api)
    assert set(rows) == {"latency", "error"}
    assert rows["latency"]["ratio"] == 0.25 and rows["latency"]["latency_ms"] == 250
    assert 80 <= rows["latency"]["remaining_seconds"] <= 90
    assert 5390 <= rows["error"]["remaining_seconds"] <= 5400
    table = api.flask("faults", "status", check=True).stdout
    assert "latency    ON" in table and "error      ON" in table and "readiness  off" in table


@pytest.mark.parametrize("args", [
    ("error",),                                   # ratio is required
    ("error", "--ratio", "0"),
    ("error", "--ratio", "1.5"),
    ("error", "--ratio", "half"),
    ("error", "--ratio", "0.5", "--for", "0s"),
    ("error", "--ratio", "0.5", "--for", "25h"),
    ("error", "--ratio", "0.5", "--for", "ten minutes"),
    ("latency", "--ms", "0"),
    ("latency", "--ms", "600000"),
    ("latency",),                                 # --ms is required
    ("clear", "everything"),
])
def test_bad_input_is_refused_and_changes_nothing(api, args):
    done = api.flask("faults", *args)
    assert done.returncode != 0
    assert "Error" in done.stderr
    assert _status(api) == {}


def test_api_clients_cannot_reach_the_switches(api):
    routes = api.flask("routes", check=True).stdout
    assert "fault" not in routes.lower()
    for method in ("GET", "POST", "PUT", "DELETE"):
        for path in ("/faults", "/api/v1/faults", "/admin/faults", "/api/v1/faults/error"):
            r = requests.request(method, f"{api.url}{path}", timeout=30,
                                 json={"kind": "error", "ratio": 1})
            assert r.status_code == 404, (method, path)
    assert _status(api) == {}
    assert _injected(_burst(api, 20)) == 0


def test_cli_explains_a_missing_table(tmp_path):
    env = base_env(tmp_path)  # a fresh database, never upgraded
    done = run_flask(env, "faults", "status")
    assert done.returncode != 0
    assert "db upgrade" in done.stderr
