"""Profile Vigil's item read and list in process (Flask's test client, real PostgreSQL).

Prints, per request: the SQL statements run (``events.query_executed``), how often PyJWT
parsed the token, and the functions that took the most time under cProfile. Not a
benchmark (cProfile slows small functions most): it says where the time goes, and
bench/bench_read_path.py says how fast the whole is.

    .venv/bin/python bench/profile_read_path.py [--requests 500] [--top 40]

Uses VIGIL_TEST_POSTGRES_URL (a server it may create a database on), else a private cluster.
"""
import argparse
import contextlib
import cProfile
import os
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from api import events  # noqa: E402
from api.migrate import upgrade  # noqa: E402
from tests.conftest import PostgresCluster, make_app, scratch_database  # noqa: E402

LIST_SIZE = 20


@contextlib.contextmanager
def _database():
    server = os.environ.get("VIGIL_TEST_POSTGRES_URL")
    cluster = None
    if not server:
        cluster = PostgresCluster().start()
        server = cluster.url
    try:
        with scratch_database(server) as url:
            yield url
    finally:
        if cluster:
            cluster.destroy()


def _prepare(client):
    creds = {"email": "profile@example.com", "password": "profile-password-123456"}
    client.post("/api/v1/auth/register", json=creds)
    token = client.post("/api/v1/auth/login", json=creds).json["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for i in range(LIST_SIZE + 5):
        item = client.post("/api/v1/content", headers=auth,
                           json={"title": f"profile {i}", "body": "x" * 200,
                                 "is_published": True})
    return auth, {"read": f"/api/v1/content/{item.json['id']}",
                  "list": f"/api/v1/content?limit={LIST_SIZE}"}


def _statements(client, url, auth):
    seen = []

    def count(sender, **_):
        seen.append(1)

    events.query_executed.connect(count)
    try:
        assert client.get(url, headers=auth).status_code == 200
    finally:
        events.query_executed.disconnect(count)
    return len(seen)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="profiled requests per route")
    parser.add_argument("--top", type=int, default=40, help="functions to print per route")
    args = parser.parse_args()
    with _database() as url:
        app = make_app(url)
        with app.app_context():
            upgrade()
        client = app.test_client()
        auth, urls = _prepare(client)
        for name, url in urls.items():
            for _ in range(50):  # warm: prepared statements, caches
                client.get(url, headers=auth)
            statements = _statements(client, url, auth)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.requests):
                client.get(url, headers=auth)
            profile.disable()
            stats = pstats.Stats(profile)
            parses = sum(calls for (path, _, function), (_, calls, *_) in stats.stats.items()
                         if path.endswith("jwt/api_jws.py") and function == "_load")
            print(f"== {name}: {statements} SQL statement(s) per request, PyJWT parsed the "
                  f"token {parses / args.requests:g} times per request, "
                  f"{stats.total_tt / args.requests * 1e3:.2f} ms per request under cProfile")
            stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
