"""The local receiver records every notification as one JSON line and refuses what is not JSON."""
import concurrent.futures
import json
import subprocess
import sys
import time

import requests
from stack_processes import RECEIVER, notifications, run_receiver


def test_every_post_becomes_one_json_line_with_path_and_payload(tmp_path):
    with run_receiver(tmp_path) as (url, log):
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        body = {"status": "firing", "alerts": [{"labels": {"alertname": "X"}}]}
        assert requests.post(f"{url}/alerts", json=body, timeout=5).status_code == 200
        records = notifications(log)
    assert len(records) == 1
    assert records[0]["path"] == "/alerts" and records[0]["payload"] == body
    assert records[0]["received_at"].endswith("+00:00")


def test_concurrent_posts_never_interleave(tmp_path):
    with run_receiver(tmp_path) as (url, log):
        def post(i):
            return requests.post(f"{url}/alerts", json={"n": i, "pad": "x" * 5000},
                                 timeout=10).status_code
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, range(64))) == {200}
        lines = log.read_text().splitlines()
    assert sorted(json.loads(line)["payload"]["n"] for line in lines) == list(range(64))


def test_bad_bodies_get_a_clear_error_and_are_not_recorded(tmp_path):
    with run_receiver(tmp_path) as (url, log):
        bad = requests.post(f"{url}/alerts", data=b"{not json",
                            headers={"Content-Type": "application/json"}, timeout=5)
        assert bad.status_code == 400 and "not JSON" in bad.json()["message"]
        assert requests.get(f"{url}/other", timeout=5).status_code == 404
        assert notifications(log) == []


def test_unwritable_file_is_refused_at_start(tmp_path):
    done = subprocess.run([sys.executable, str(RECEIVER), "--file", str(tmp_path / "no" / "x"),
                           "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "cannot write" in done.stderr


def _alert(name, status, severity="page", fingerprint=None):
    return {"status": status, "fingerprint": fingerprint or name,
            "labels": {"alertname": name, "severity": severity, "service": "vigil-api"},
            "annotations": {"summary": f"{name} <b>now</b>",
                            "runbook_url": f"/runbooks/slo.md#{name.lower()}",
                            "dashboard": "/d/vigil-api-overview/x"},
            "startsAt": "2026-12-01T06:00:00Z"}


def test_the_page_lists_what_fires_now_with_runbook_and_dashboard_links(tmp_path):
    with run_receiver(tmp_path) as (url, _):
        for status, alerts in (("firing", [_alert("ApiAvailabilityBudgetBurn", "firing"),
                                           _alert("NodeHighCpu", "firing", "ticket")]),
                               ("resolved", [_alert("NodeHighCpu", "resolved", "ticket")]),
                               ("firing", [_alert("Watchdog", "firing", "info")])):
            requests.post(f"{url}/alerts", timeout=5, json={
                "receiver": "page", "status": status, "alerts": alerts})
        state = requests.get(f"{url}/state.json", timeout=5).json()
        page = requests.get(f"{url}/", timeout=5)
    assert [a["labels"]["alertname"] for a in state["firing"]] == ["ApiAvailabilityBudgetBurn"]
    assert state["heartbeat_at"] and len(state["recent"]) == 2  # the Watchdog is not "recent"
    assert page.headers["Content-Type"].startswith("text/html")
    assert '<a href="/runbooks/slo.md#apiavailabilitybudgetburn">runbook</a>' in page.text
    assert 'href="http://localhost:3000/d/vigil-api-overview/x"' in page.text
    assert "&lt;b&gt;now&lt;/b&gt;" in page.text  # annotations are escaped, never markup
    assert "NodeHighCpu" in page.text.split("Latest notifications")[1]
    assert "NodeHighCpu" not in page.text.split("Latest notifications")[0]


def test_a_silent_watchdog_raises_a_local_ticket_and_its_return_resolves_it(tmp_path):
    log = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([sys.executable, str(RECEIVER), "--file", str(log), "--listen",
                             "127.0.0.1:0", "--heartbeat-timeout", "1"], stdout=subprocess.PIPE,
                            text=True)
    try:
        host_port = proc.stdout.readline().split()[-1]
        deadline = time.monotonic() + 20
        while not [r for r in notifications(log) if r["path"] == "/deadmansswitch"]:
            assert time.monotonic() < deadline, "no WatchdogHeartbeatMissing"
            time.sleep(0.2)
        [missing] = notifications(log)
        alert = missing["payload"]["alerts"][0]
        assert (alert["labels"]["alertname"], alert["status"]) == (
            "WatchdogHeartbeatMissing", "firing")
        assert alert["annotations"]["runbook_url"] == (
            "/runbooks/watchdog.md#watchdogheartbeatmissing")
        requests.post(f"http://{host_port}/alerts", timeout=5, json={
            "receiver": "heartbeat", "status": "firing",
            "alerts": [_alert("Watchdog", "firing", "info")]})
        statuses = [r["payload"]["alerts"][0]["status"] for r in notifications(log)
                    if r["path"] == "/deadmansswitch"]
        assert statuses == ["firing", "resolved"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
