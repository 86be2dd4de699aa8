"""Slow clients at the front door: ten connections sending their headers one byte a second
hold nginx connections, not gunicorn workers, and the API keeps answering through nginx
(issue 15; ADR 0050). Without nginx in front, the same ten clients held every sync worker
until gunicorn's 30 s timeout killed it and the API was unreachable for 85 s."""
import contextlib
import re
import socket
import ssl
import threading
import time

import pytest

pytestmark = [pytest.mark.appliance, pytest.mark.slow]

SLOW_CLIENTS = 10
#: Longer than gunicorn's worker timeout (30 s), so a held worker would have been killed,
#: and shorter than nginx's client_header_timeout (60 s), so nginx still holds them at the end.
SLOW_SECONDS = 40
PROBE_TIMEOUT = 5.0
#: The request the slow clients trickle out, one byte a second; never completed.
TRICKLE = (b"GET /api/v1/content HTTP/1.1\r\nHost: vigil\r\nUser-Agent: slow-client-test\r\n"
           b"X-Padding: " + b"s" * 200)


def _api_workers(appliance):
    """The gunicorn master's pid and its workers' pids, as the machine reports them."""
    master = appliance.run("systemctl", "show", "--property=MainPID", "--value",
                           "vigil-api").stdout.strip()
    workers = appliance.run("pgrep", "-P", master, check=False).stdout.split()
    return master, sorted(workers)


def _nginx_reading(appliance):
    """nginx's count of connections whose request it is still reading (stub_status)."""
    status = appliance.run("curl", "-sf", "http://127.0.0.1:8081/stub_status").stdout
    return int(re.search(r"Reading: (\d+)", status).group(1))


def _open_slow_client(ip, context, deadline):
    raw = socket.create_connection((ip, 443), timeout=10)
    try:
        conn = context.wrap_socket(raw, server_hostname=ip)
    except BaseException:
        raw.close()
        raise
    conn.settimeout(max(1.0, deadline - time.monotonic()))
    return conn


def _still_waiting(conn):
    """Whether the server still holds the connection without having answered or closed it."""
    conn.setblocking(False)
    try:
        conn.recv(1)  # an answer (a 408, say) or the end of the connection
    except ssl.SSLWantReadError:
        return True
    except OSError:
        pass
    return False


def _trickle(conns, stop, sent):
    """Send TRICKLE one byte a second on every connection until ``stop`` is set."""
    for i in range(len(TRICKLE)):
        if stop.wait(1.0):
            return
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sendall(TRICKLE[i:i + 1])
        sent[0] = i + 1


def test_slow_clients_hold_nginx_not_gunicorn(appliance):
    ip = appliance.ip
    auth = appliance.account()
    read = f"{appliance.https}/api/v1/content?limit=1"
    assert appliance.http.get(read, headers=auth, timeout=PROBE_TIMEOUT).status_code == 200
    workers_before = _api_workers(appliance)
    reading_before = _nginx_reading(appliance)

    context = ssl.create_default_context(cafile=str(appliance.ca))
    context.check_hostname = False  # the certificate names the machine, we dial its address
    deadline = time.monotonic() + SLOW_SECONDS + 60  # nothing below may outlive this
    conns, stop, sent = [], threading.Event(), [0]
    trickler = threading.Thread(target=_trickle, args=(conns, stop, sent), daemon=True)
    probes, reading_during = [], None
    try:
        for _ in range(SLOW_CLIENTS):
            conns.append(_open_slow_client(ip, context, deadline))
        trickler.start()
        started = time.monotonic()
        while time.monotonic() - started < SLOW_SECONDS:
            t = time.monotonic()
            try:
                status = appliance.http.get(read, headers=auth,
                                            timeout=PROBE_TIMEOUT).status_code
            except OSError as e:  # requests' timeouts and connection errors
                status = type(e).__name__
            probes.append((round(t - started, 1), status, round(time.monotonic() - t, 2)))
            if reading_during is None and t - started > SLOW_SECONDS / 2:
                reading_during = _nginx_reading(appliance)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
        # Each slow client is still connected and unanswered: its request never completed.
        still_waiting = sum(_still_waiting(conn) for conn in conns)
    finally:
        stop.set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        if trickler.is_alive():
            trickler.join(timeout=5)

    failed = [p for p in probes if p[1] != 200]
    assert not failed, f"reads failed while {SLOW_CLIENTS} slow clients were connected: {probes}"
    assert len(probes) >= SLOW_SECONDS // 2, probes
    assert sent[0] >= SLOW_SECONDS - 2, f"the slow clients sent only {sent[0]} bytes each"
    assert still_waiting == SLOW_CLIENTS, f"only {still_waiting} slow clients were still held open"
    # nginx held them while reading their headers (the clients were really at the door) ...
    assert reading_during >= reading_before + SLOW_CLIENTS, (reading_before, reading_during)
    # ... and gunicorn never saw them: no worker was held past its timeout and replaced.
    assert _api_workers(appliance) == workers_before
