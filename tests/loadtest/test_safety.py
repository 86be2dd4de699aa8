"""The host guard: loopback or an explicitly allowed appliance, nothing else, ever."""

import pytest

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
