"""The local receiver records every notification as one JSON line and refuses what is not JSON."""
import concurrent.futures
import json
import subprocess
import sys

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
