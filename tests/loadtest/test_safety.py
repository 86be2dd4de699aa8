"""The host guard: loopback or an explicitly allowed appliance, nothing else, ever."""

import contextlib
import signal
import subprocess
import time

import pytest
import requests

from loadtest.safety import UnsafeHost, check_host


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.9.8.7",
        "https://localhost:8443",
        "http://[::1]:8000",
        "http://LOCALHOST",
    ],
)
def test_loopback_is_allowed(url):
    check_host(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8000",
        "https://example.com",
        "http://localhost.example.com",
        "http://[2001:db8::1]",
        "http://0.0.0.0:8000",
        "http://192.168.56.10",
    ],
)
def test_anything_else_is_refused(url):
    with pytest.raises(UnsafeHost, match="refusing"):
        check_host(url)


@pytest.mark.parametrize(
    "url, allow",
    [
        ("http://192.168.56.10:8000", "192.168.56.10"),
        ("http://192.168.56.10", "10.1.1.1, 192.168.56.0/24"),
        ("https://vigil.appliance.test", "vigil.appliance.test"),
    ],
)
def test_the_appliance_can_be_allowed_by_name(url, allow):
    check_host(url, allow)


@pytest.mark.parametrize("url", [None, "", "ftp://127.0.0.1", "127.0.0.1:8000"])
def test_missing_or_malformed_hosts_are_refused(url):
    with pytest.raises(UnsafeHost):
        check_host(url)


def test_locust_refuses_a_non_loopback_host_before_starting(run_locust):
    # TEST-NET-1: never routed, so even a broken guard could not load anyone.
    done = run_locust(
        "--headless",
        "--host",
        "http://192.0.2.10:8000",
        "--scenario",
        "smoke",
        "--load-duration",
        "5s",
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to send load to 192.0.2.10" in done.stderr
    assert "Shape test updating" not in done.stderr  # no user was ever started


@pytest.mark.slow
def test_a_host_typed_into_the_web_ui_is_refused_too(
    tmp_path, locust_command, locust_env, free_port
):
    port, log = free_port(), tmp_path / "locust.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            locust_command(
                "--scenario",
                "smoke",
                "--load-duration",
                "3s",
                "--host",
                "http://127.0.0.1:9",
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(port),
                "--report-dir",
                str(tmp_path / "r"),
            ),
            env=locust_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ui = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(ui, timeout=1).ok:
                    break
            time.sleep(0.2)
        started = requests.post(
            f"{ui}/swarm",
            timeout=5,
            data={"user_count": 1, "spawn_rate": 1, "host": "http://192.0.2.5:8000"},
        )
        assert started.json()["success"] is True
        deadline = time.monotonic() + 20
        while "refusing to send load to 192.0.2.5" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        stats = requests.get(f"{ui}/stats/requests", timeout=5).json()["stats"]
        assert sum(row["num_requests"] for row in stats) == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 2
    finally:
        proc.kill()
        proc.wait(timeout=10)
