"""Scenarios run for real, headless, against the API under gunicorn on loopback (PostgreSQL):
exit codes, reports, the Prometheus endpoint, distributed verdicts, stress steps, spike recovery."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.loadtest.conftest import shipped_smoke_on_a_shared_host, verdict_rows
from tests.nginx_front import run_nginx

pytestmark = [pytest.mark.stack, pytest.mark.postgres, pytest.mark.slow]
FAST = ("--think-time", "0.1:0.4")  # short runs still reach every task


def api_counts(url: str) -> Counter:
    """Requests the API counted, summed over status, by (method, route): the request
    histogram's _count (prometheus-flask-exporter puts the route on its histogram only)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    counts: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "flask_http_request_duration_seconds_count":
                counts[(sample.labels["method"], sample.labels["route"])] += int(sample.value)
    return counts


def thresholds_file(tmp_path, body: str):
    path = tmp_path / "thresholds.yml"
    path.write_text(body)
    return str(path)


def scrape(port: int) -> dict:
    samples = {}
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_smoke_passes_and_agrees_with_the_apis_own_count(
    live_api, tmp_path, locust_env, locust_command, free_port
):
    users, port = 3, free_port()
    before = api_counts(live_api.url)
    report = tmp_path / "report"
    proc = subprocess.Popen(
        locust_command(
            "--headless",
            "--host",
            live_api.url,
            "--scenario",
            "smoke",
            "--load-duration",
            "10s",
            *FAST,
            "--thresholds",
            shipped_smoke_on_a_shared_host(tmp_path / "thresholds.yml"),
            "--report-dir",
            str(report),
            "--html",
            str(report / "locust.html"),
            "--csv",
            str(report / "locust"),
            "--prometheus-port",
            str(port),
        ),
        env=locust_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                seen = scrape(port)
            except requests.RequestException:
                seen = {}
            if seen.get(("locust_users", ())) == users and seen.get(
                ("locust_requests_total", (("method", "ALL"), ("name", "Aggregated")))
            ):
                break
            time.sleep(0.5)
        output, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    # the exporter showed the running scenario while it ran
    assert (
        seen[
            (
                "locust_scenario_info",
                (("host", live_api.url), ("scenario", "smoke"), ("state", "running")),
            )
        ]
        == 1
    )
    assert (
        "locust_response_time_seconds",
        (("method", "ALL"), ("name", "Aggregated"), ("quantile", "0.95")),
    ) in seen
    assert "Thresholds: " in output and "0 failed" in output

    verdict = json.loads((report / "thresholds.json").read_text())
    assert verdict["passed"] is True and verdict["scenario"] == "smoke"
    assert (report / "locust.html").stat().st_size > 0
    # The HTML report carries the verdict: one row per threshold, as judged.
    assert [row[:3] for row in verdict_rows(report / "report.html")] == [
        ["PASS", t["selector"], t["expression"]] for t in verdict["thresholds"]
    ]
    assert 'href="locust.html"' in (report / "report.html").read_text().replace("'", '"')
    assert (report / "locust_stats.csv").read_text().count("\n") > 2

    # Locust and the API agree: the API may also have counted requests still in flight when
    # Locust stopped its users (at most one per user), never fewer than Locust.
    after = api_counts(live_api.url)
    rows = {(r["method"], r["name"]): r["requests"] for r in verdict["routes"]}
    assert {name for _, name in rows} >= {
        "/api/v1/content",
        "/api/v1/content/<id>",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
    }
    in_flight = 0
    for key, locust_n in rows.items():
        api_n = after[key] - before[key]
        assert locust_n <= api_n <= locust_n + users, (key, locust_n, api_n)
        in_flight += api_n - locust_n
    assert in_flight <= users
    assert verdict["totals"]["requests"] == sum(rows.values())
    # Accounts were registered before the measured phase (one per user), outside Locust's rows.
    register = ("POST", "/api/v1/auth/register")
    assert register not in rows
    assert after[register] - before[register] == verdict["accounts"]["created"] == users
    assert sum(after.values()) - sum(before.values()) == sum(rows.values()) + in_flight + users


def test_an_impossible_threshold_fails_the_run_and_is_named(live_api, tmp_path, run_locust):
    path = thresholds_file(
        tmp_path,
        "smoke:\n  all: ['p(95) < 0.1', 'error_ratio < 0.5']\n"
        "  GET /api/v1/content: ['p(95) < 0.1']\n",
    )
    done = run_locust(
        "--headless",
        "--host",
        live_api.url,
        "--scenario",
        "smoke",
        "--load-duration",
        "5s",
        *FAST,
        "--thresholds",
        path,
        "--report-dir",
        str(tmp_path / "r"),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "THRESHOLD FAILED: all p(95) < 0.1" in done.stdout
    assert "THRESHOLD FAILED: GET /api/v1/content p(95) < 0.1" in done.stdout
    assert "PASS    all" in done.stdout  # error_ratio held: only the impossible ones fail
    verdict = json.loads((tmp_path / "r" / "thresholds.json").read_text())
    assert verdict["passed"] is False
    html_rows = verdict_rows(tmp_path / "r" / "report.html")
    assert ["FAIL", "all", "p(95) < 0.1"] in [row[:3] for row in html_rows]
    assert ["PASS", "all", "error_ratio < 0.5"] in [row[:3] for row in html_rows]
    assert "FAIL</span></h1>" in (tmp_path / "r" / "report.html").read_text()


def test_distributed_the_master_decides(live_api, tmp_path, locust_env, locust_command, free_port):
    """A master and one worker, behind the appliance's nginx with a tight auth limit: the
    worker gets its share of the prepared accounts and ships its back-pressure counts."""
    port = free_port()
    path = thresholds_file(tmp_path, "smoke:\n  all: ['requests > 5', 'p(95) < 0.1']\n")
    upstream = live_api.url.removeprefix("http://")
    with run_nginx(
        tmp_path / "nginx", upstream=upstream, nginx_auth_rate="2r/s", nginx_auth_burst=2
    ) as front:
        master_out, worker_out, codes = _master_and_worker(
            front.url, path, tmp_path, locust_env, locust_command, port
        )
    assert codes == (1, 0), master_out + worker_out
    assert "THRESHOLD FAILED: all p(95) < 0.1" in master_out
    assert "Thresholds for scenario" not in worker_out  # workers do not judge
    verdict = json.loads((tmp_path / "r" / "thresholds.json").read_text())
    assert verdict["workers"] == 1
    assert verdict["totals"]["requests"] > 5  # counted by the worker, judged by the master
    [held] = [t for t in verdict["thresholds"] if t["expression"] == "requests > 5"]
    assert held["passed"] is True
    assert verdict["accounts"]["created"] == 3  # prepared by the master, used by the worker
    assert verdict["totals"]["backpressure"] > 0  # counted by the worker, reported by the master
    assert verdict["totals"]["backpressure"] == sum(r["answers"] for r in verdict["backpressure"])
    assert verdict["totals"]["failures"] == 0


def _master_and_worker(host, path, tmp_path, locust_env, locust_command, port):
    master = subprocess.Popen(
        locust_command(
            "--master",
            "--headless",
            "--expect-workers",
            "1",
            "--expect-workers-max-wait",
            "30",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--host",
            host,
            "--scenario",
            "smoke",
            "--load-duration",
            "6s",
            *FAST,
            "--thresholds",
            path,
            "--report-dir",
            str(tmp_path / "r"),
        ),
        env=locust_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker = subprocess.Popen(
        locust_command("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
        env=locust_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        master_out, _ = master.communicate(timeout=90)
        worker_out, _ = worker.communicate(timeout=30)
    finally:
        master.kill()
        worker.kill()
    return master_out, worker_out, (master.returncode, worker.returncode)


STRESS = ("--scenario", "stress", "--stress-step-users", "2", "--stress-step-duration", "4s")


def test_stress_holds_every_step_when_the_service_copes(live_api, tmp_path, run_locust):
    """Accounts are prepared at 1/s, longer than a step: the steps start after them."""
    path = thresholds_file(
        tmp_path,
        "stress:\n  all: ['error_ratio < 0.5']\n"
        "  step: ['error_ratio < 0.5', 'p(95) < 60000']\n"
        "  run: ['held_users >= 6']\n",
    )
    done = run_locust(
        "--headless",
        "--host",
        live_api.url,
        *STRESS,
        "--stress-max-steps",
        "3",
        "--accounts-rate",
        "1",
        *FAST,
        "--thresholds",
        path,
        "--report-dir",
        str(tmp_path / "r"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = json.loads((tmp_path / "r" / "thresholds.json").read_text())
    assert verdict["accounts"]["created"] == 6 and verdict["accounts"]["seconds"] > 4
    shape = verdict["shape"]
    assert [s["users"] for s in shape["steps"]] == [2, 4, 6]
    assert all(s["passed"] and s["requests"] > 0 for s in shape["steps"])
    assert (shape["held_users"], shape["broke_at_users"]) == (6, None)


def test_stress_stops_at_the_step_that_breaks(live_api, tmp_path, run_locust):
    path = thresholds_file(
        tmp_path,
        "stress:\n  all: ['error_ratio < 0.5']\n"
        "  step: ['p(95) < 0.1']\n  run: ['held_users >= 2']\n",
    )
    started = time.monotonic()
    done = run_locust(
        "--headless",
        "--host",
        live_api.url,
        *STRESS,
        "--stress-max-steps",
        "5",
        *FAST,
        "--thresholds",
        path,
        "--report-dir",
        str(tmp_path / "r"),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "THRESHOLD FAILED: run held_users >= 2 (measured 0.0)" in done.stdout
    assert "broke at 2 users" in done.stdout
    assert time.monotonic() - started < 18  # stopped after the first step, not all five (20 s)


def test_spike_measures_recovery(live_api, tmp_path, run_locust):
    path = thresholds_file(
        tmp_path,
        "spike:\n  all: ['error_ratio < 0.5']\n"
        "  recovered: ['error_ratio < 0.5', 'p(95) < 60000']\n"
        "  run: ['recovery_s < 30']\n",
    )
    done = run_locust(
        "--headless",
        "--host",
        live_api.url,
        "--scenario",
        "spike",
        "--load-users",
        "2",
        "--load-ramp",
        "4s",
        "--spike-multiplier",
        "3",
        "--spike-duration",
        "3s",
        "--spike-recovery",
        "10s",
        *FAST,
        "--thresholds",
        path,
        "--report-dir",
        str(tmp_path / "r"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    shape = json.loads((tmp_path / "r" / "thresholds.json").read_text())["shape"]
    assert 0 <= shape["recovery_s"] < 10
    assert shape["windows"]["spike"]["users"] == 6
    assert all(shape["windows"][w]["requests"] > 0 for w in ("baseline", "spike", "after"))
    assert shape["after_drop"] and all(w["requests"] > 0 for w in shape["after_drop"])


NEVER_ENDING = '''
import sys
sys.path.insert(0, {root!r})
from loadtest.locustfile import *  # noqa: F401,F403  the personas and Vigil's listeners
from loadtest.shapes import smoke

del ScenarioShape  # noqa: F821  Locust runs the first shape it finds: make it this one


class StuckShape(smoke.SmokeShape):
    """A smoke shape whose stage never ends, as a shape stuck on a stage would."""

    def tick_at(self, t):
        return (1, 1.0)
'''


def test_a_run_that_would_not_end_is_stopped_and_failed(live_api, tmp_path, locust_env):
    locustfile = tmp_path / "stuck_locustfile.py"
    locustfile.write_text(NEVER_ENDING.format(root=str(Path(__file__).resolve().parents[2])))
    started = time.monotonic()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "locust"),
            "-f",
            str(locustfile),
            "--headless",
            "--host",
            live_api.url,
            "--load-duration",
            "3s",
            "--time-margin",
            "2s",
            *FAST,
            "--report-dir",
            str(tmp_path / "r"),
        ],
        env=locust_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "hard time bound of 5 s" in done.stderr
    assert "THRESHOLD FAILED: run ends within 5 s" in done.stdout
    assert time.monotonic() - started < 30
