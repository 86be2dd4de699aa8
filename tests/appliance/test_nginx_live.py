"""The nginx role's site run for real on loopback: the auth rate limit spares the project's own
load generators (from the inventory and the operator's list) and still limits everyone else;
the answers nginx makes itself keep the security headers; only Mozilla's intermediate ciphers
are offered; requests are balanced across the api group and a dead node is passed over."""
import http.client
import json
import socket
import ssl

import pytest
import requests
import yaml

from tests.nginx_front import ROLE, run_nginx

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


SECURITY_HEADERS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())[
    "nginx_security_headers"]


def _raw(url, request_bytes):
    """Send raw bytes over TLS; the status line and headers nginx answers with."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(request_bytes)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    return int(head[0].split()[1]), headers


def test_answers_nginx_makes_itself_keep_the_security_headers(tmp_path):
    """429 and 400 come from locations with their own add_header, which in nginx inherit none of
    the server's: each must repeat the security headers."""
    upstream = _free_port()
    with run_nginx(tmp_path, upstream=f"127.0.0.1:{upstream}",
                   extra_http=STUB.format(port=upstream), nginx_auth_rate="1r/s",
                   nginx_auth_burst=1) as front:
        _, refused = burst(front.url, "127.0.0.1", n=10)
        bad = _raw(front.url, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 6000
                   + b"\r\n\r\n")
    answers = {429: refused[0], bad[0]: bad[1]}
    assert set(answers) == {429, 400}, set(answers)
    for status, headers in answers.items():
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value, (status, name, headers)
        assert headers.get("X-Request-ID"), status


@pytest.mark.parametrize(("cipher", "accepted"), [
    ("ECDHE-RSA-AES128-GCM-SHA256", True),
    ("ECDHE-RSA-CHACHA20-POLY1305", True),
    ("DHE-RSA-AES256-GCM-SHA384", True),  # the ffdhe2048 parameters are loaded
    ("ECDHE-RSA-AES128-SHA256", False),  # CBC: not in the intermediate profile
    ("AES256-GCM-SHA384", False),  # RSA key exchange: no forward secrecy
])
def test_only_mozillas_intermediate_ciphers_are_offered_over_tls_1_2(tmp_path, cipher, accepted):
    upstream = _free_port()
    with run_nginx(tmp_path, upstream=f"127.0.0.1:{upstream}",
                   extra_http=STUB.format(port=upstream)) as front:
        host, port = front.url.removeprefix("https://").split(":")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cipher)
        try:
            with socket.create_connection((host, int(port)), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname=host) as tls:
                negotiated = tls.cipher()[0]
        except ssl.SSLError:
            negotiated = None
    assert (negotiated == cipher) == accepted, negotiated


# Two API nodes on loopback addresses of their own, at one port (the api group's api_port).
NODE = "server {{ listen {address}:{port}; location / {{ return 200 '{name}'; }} }}"


def _balanced(tmp_path, port, nodes_up):
    groups = {"api": ["app1", "app2"]}
    hostvars = {"app1": {"vigil_private_ip": "127.0.0.11"},
                "app2": {"vigil_private_ip": "127.0.0.12"}}
    stubs = "\n".join(NODE.format(address=hostvars[n]["vigil_private_ip"], port=port, name=n)
                      for n in nodes_up)
    return run_nginx(tmp_path, extra_http=stubs, groups=groups, hostvars=hostvars,
                     nginx_api_port=port)


def test_requests_are_balanced_across_every_api_node(tmp_path):
    with _balanced(tmp_path, _free_port(), ["app1", "app2"]) as front:
        answers = [requests.get(f"{front.url}/api/v1/content", verify=front.ca, timeout=10).text
                   for _ in range(10)]
    assert answers.count("app1") == answers.count("app2") == 5, answers


def test_a_node_that_refuses_connections_is_passed_over_even_for_a_post(tmp_path):
    """app2 is down (nothing listens on its address): every request, a POST included (it never
    reached app2), is answered by app1; nginx logs each refusal it passed over."""
    with _balanced(tmp_path, _free_port(), ["app1"]) as front:
        answers = [requests.request(method, f"{front.url}/api/v1/content", verify=front.ca,
                                    timeout=10, json={})
                   for method in ("GET", "POST") * 5]
        log = front.error_log.read_text()
    assert [(r.status_code, r.text) for r in answers] == [(200, "app1")] * 10
    assert "127.0.0.12" in log and "Connection refused" in log
