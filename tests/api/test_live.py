"""The API under real gunicorn: revocation across workers and restarts, outage and recovery."""
import secrets
import socket
import time

import psycopg2
import pytest
import requests

from tests.conftest import PostgresCluster, wait_until
from tests.servers import run_api

pytestmark = pytest.mark.stack

FAST_ARGON2_ENV = {"VIGIL_ARGON2_TIME_COST": "1", "VIGIL_ARGON2_MEMORY_KIB": "8",
                   "VIGIL_ARGON2_PARALLELISM": "1"}


def _signup(url, email="live@example.com", password="correct horse battery"):
    r = requests.post(f"{url}/api/v1/auth/register", json={"email": email, "password": password},
                      timeout=10)
    assert r.status_code in (201, 409), r.text
    r = requests.post(f"{url}/api/v1/auth/login", json={"email": email, "password": password},
                      timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _one_read_per_worker(api, headers):
    """The statuses of GET /api/v1/content answered once by each worker of a 2-worker API.

    gunicorn's sync workers take connections in whatever order the kernel wakes them, so a
    run of requests can all land on one worker (eleven in a row were seen on this loaded
    host). A request whose headers are unfinished holds the worker that accepted it; the
    next request can then only go to the other one, and the held one is finished after.
    """
    head = (f"GET /api/v1/content HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
            f"Authorization: {headers['Authorization']}\r\nConnection: close\r\n")
    with socket.create_connection(("127.0.0.1", api.port), timeout=15) as held:
        held.sendall(head.encode())
        other = requests.get(f"{api.url}/api/v1/content", headers=headers, timeout=15)
        held.sendall(b"\r\n")
        with held.makefile("rb") as answer:
            status_line = answer.readline().decode()
    return [int(status_line.split()[1]), other.status_code]


def test_revocation_holds_across_workers_nodes_and_a_restart(tmp_path):
    env = {**FAST_ARGON2_ENV, "VIGIL_JWT_SECRET_KEY": secrets.token_hex(32),
           "VIGIL_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}"}
    with run_api(tmp_path / "a", workers=3, env=env) as api, \
            run_api(tmp_path / "b", workers=1, env=env) as other_node:
        revoked, kept = _signup(api.url), _signup(api.url)
        r = requests.post(f"{api.url}/api/v1/auth/logout",
                          headers=_bearer(revoked["access_token"]), timeout=10)
        assert r.status_code == 204
        # many requests, so every worker answers some of them
        for _ in range(30):
            r = requests.get(f"{api.url}/api/v1/users/me",
                             headers=_bearer(revoked["access_token"]), timeout=10)
            assert r.status_code == 401
            assert r.headers["Content-Type"] == "application/problem+json"
        assert requests.get(f"{other_node.url}/api/v1/users/me", headers=_bearer(
            revoked["access_token"]), timeout=10).status_code == 401
        assert requests.get(f"{other_node.url}/api/v1/users/me", headers=_bearer(
            kept["access_token"]), timeout=10).status_code == 200
    with run_api(tmp_path / "c", workers=2, env=env) as api:
        assert requests.get(f"{api.url}/api/v1/users/me", headers=_bearer(
            revoked["access_token"]), timeout=10).status_code == 401
        assert requests.post(f"{api.url}/api/v1/auth/refresh", headers=_bearer(
            revoked["refresh_token"]), timeout=10).status_code == 401
        assert requests.get(f"{api.url}/api/v1/users/me", headers=_bearer(
            kept["access_token"]), timeout=10).status_code == 200


@pytest.mark.postgres
@pytest.mark.slow
def test_database_outage_is_503_and_recovers_without_a_restart(tmp_path):
    """Stop the real PostgreSQL under a running gunicorn, then start it again."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        admin = psycopg2.connect(cluster.url)
        admin.autocommit = True
        admin.cursor().execute("CREATE DATABASE vigil")
        admin.close()
        env = {**FAST_ARGON2_ENV,
               "VIGIL_DATABASE_URL": cluster.url.rsplit("/", 1)[0] + "/vigil"}
        with run_api(tmp_path, workers=2, env=env) as api:
            tokens = _signup(api.url)
            headers = _bearer(tokens["access_token"])
            created = requests.post(f"{api.url}/api/v1/content", headers=headers, timeout=10,
                                    json={"title": "survives the outage"})
            assert created.status_code == 201
            # warm both workers' pools, so recovery must cope with dead pooled connections
            for _ in range(10):
                assert requests.get(f"{api.url}/api/v1/content", headers=headers,
                                    timeout=10).status_code == 200

            cluster.stop("fast")
            # Both workers meet the outage (and drop their pooled connections), whichever
            # of them the kernel hands the requests below.
            assert _one_read_per_worker(api, headers) == [503, 503]
            for _ in range(6):
                r = requests.get(f"{api.url}/api/v1/content", headers=headers, timeout=15)
                assert r.status_code == 503, r.text
                assert r.headers["Content-Type"] == "application/problem+json"
                assert r.json()["status"] == 503 and r.json()["request_id"]
                assert "Traceback" not in r.text
            login = requests.post(f"{api.url}/api/v1/auth/login", timeout=15, json={
                "email": "live@example.com", "password": "correct horse battery"})
            assert login.status_code == 503
            assert requests.get(f"{api.url}/health/ready", timeout=15).status_code == 503
            assert requests.get(f"{api.url}/health/live", timeout=15).status_code == 200
            # the scrape still answers, and says what the readiness alert needs to know
            scraped = requests.get(f"{api.url}/metrics", timeout=15)
            assert scraped.status_code == 200 and "\nvigil_ready 0.0\n" in scraped.text

            cluster.start()
            started = time.monotonic()
            recovered = wait_until(lambda: requests.get(
                f"{api.url}/api/v1/content", headers=headers, timeout=15).status_code == 200,
                timeout=30)
            assert recovered, "the API did not recover within 30 s of the database returning"
            print(f"recovered {time.monotonic() - started:.2f}s after PostgreSQL came back")
            for _ in range(20):
                r = requests.get(f"{api.url}/api/v1/content", headers=headers, timeout=10)
                assert r.status_code == 200
            assert [i["title"] for i in r.json()["items"]] == ["survives the outage"]
            assert requests.get(f"{api.url}/health/ready", timeout=10).status_code == 200
            assert "\nvigil_ready 1.0\n" in requests.get(f"{api.url}/metrics", timeout=10).text

            # A restart between two requests leaves dead connections in the pools: each
            # worker may answer one 503 while it discards them, never more.
            cluster.stop("fast")
            cluster.start()
            assert set(_one_read_per_worker(api, headers)) <= {200, 503}
            statuses = [requests.get(f"{api.url}/api/v1/content", headers=headers,
                                     timeout=10).status_code for _ in range(20)]
            assert statuses == [200] * 20, statuses
            assert api.process.poll() is None, "gunicorn was restarted"
    finally:
        cluster.destroy()
