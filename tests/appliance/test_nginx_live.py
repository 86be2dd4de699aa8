"""The nginx role's site run for real on loopback: the auth rate limit spares the project's own
load generators (from the inventory and the operator's list) and still limits everyone else."""
import http.client
import json
import socket
import ssl

import pytest

from tests.nginx_front import run_nginx

pytestmark = pytest.mark.stack

# A stand-in for the API: nginx's limit acts before proxying, so any 200 will do.
STUB = "server {{ listen 127.0.0.1:{port}; location / {{ return 200 '{{}}'; }} }}"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def burst(url, source, n=60):
    """Send ``n`` logins back to back from ``source``; the statuses in order, and one 429."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, int(port), source_address=(source, 0),
                                       context=context, timeout=10)
    statuses, refused = [], None
    try:
        for _ in range(n):
            conn.request("POST", "/api/v1/auth/login", body="{}",
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            statuses.append(response.status)
            if response.status == 429 and refused is None:
                refused = (dict(response.getheaders()), body)
    finally:
        conn.close()
    return statuses, refused


def test_load_generators_are_exempt_and_everyone_else_is_limited(tmp_path):
    upstream = _free_port()
    groups = {"loadgen": ["load1"]}
    hostvars = {"load1": {"vigil_private_ip": "127.0.0.3"}}
    with run_nginx(tmp_path, upstream=f"127.0.0.1:{upstream}",
                   extra_http=STUB.format(port=upstream), groups=groups, hostvars=hostvars,
                   nginx_auth_limit_exempt_addresses=["127.0.0.1"],
                   nginx_auth_rate="10r/s", nginx_auth_burst=20) as front:
        operator, _ = burst(front.url, "127.0.0.1")
        loadgen, _ = burst(front.url, "127.0.0.3")
        stranger, refused = burst(front.url, "127.0.0.2")

    assert operator == [200] * 60, operator  # the operator's host (nginx_auth_limit_exempt_..)
    assert loadgen == [200] * 60, loadgen  # the inventory's loadgen host
    # Anyone else: the burst of 20 passes, then 10 r/s holds (a few more trickle through).
    assert stranger[:21] == [200] * 21, stranger
    assert stranger.count(429) >= 30, stranger
    headers, body = refused
    assert headers["Retry-After"] == "1"
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["status"] == 429
