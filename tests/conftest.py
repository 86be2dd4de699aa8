"""Shared fixtures: ``app`` and ``client`` over SQLite and a real PostgreSQL, and an auth helper."""
import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from api import create_app
from api.db import close_database
from api.migrate import upgrade

#: Cheap argon2 for speed; tests/api/test_passwords.py checks the production defaults.
FAST_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 8, "ARGON2_PARALLELISM": 1}
PG_START_TIMEOUT = 60
CLUSTER_PREFIX = "vigil-pg-"
_HASH_SLOTS_DIR = tempfile.mkdtemp(prefix="vigil-test-hash-slots-")
atexit.register(shutil.rmtree, _HASH_SLOTS_DIR, True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temp dir, on a free loopback port."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(p.split("/")[4]))
        if not bins:
            pytest.skip("no PostgreSQL server binaries (apt-get install postgresql, "
                        "or set VIGIL_TEST_POSTGRES_URL)")
        self.bin = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix=CLUSTER_PREFIX)
        self.data = os.path.join(self.dir, "data")
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        self.port = None
        # PostgreSQL refuses to run as root: run it as the postgres user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")

    def _run(self, tool, *args, check=True, timeout=120):
        return subprocess.run([*self.as_user, os.path.join(self.bin, tool), *args],
                              capture_output=True, text=True, check=check, timeout=timeout)

    @property
    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self):
        """Start on a free port (a new one unless already chosen) and wait until it answers."""
        for _ in range(5):
            port = self.port or _free_port()
            opts = (f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            done = self._run("pg_ctl", "-D", self.data, "-o", opts, "-w", "-t",
                             str(PG_START_TIMEOUT), "-l", os.path.join(self.dir, "log"),
                             "start", check=False)
            if done.returncode == 0:
                self.port = port
                return self
            if self.port:  # a fixed port we must reuse: do not wander off
                break
        raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n" + self.log())

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def log(self):
        with contextlib.suppress(OSError), open(os.path.join(self.dir, "log")) as f:
            return f.read()[-3000:]
        return ""

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def reap_orphans(cls):
        """Stop and delete clusters whose test session died without tearing them down."""
        for path in glob.glob(os.path.join(tempfile.gettempdir(), CLUSTER_PREFIX + "*")):
            try:
                with open(os.path.join(path, "owner.pid")) as f:
                    owner = int(f.read())
                os.kill(owner, 0)
                continue  # its session is alive
            except (OSError, ValueError) as e:
                if not isinstance(e, ProcessLookupError):
                    continue  # unreadable or owner alive under another user: not ours to judge
            orphan = cls.__new__(cls)
            orphan.dir, orphan.data = path, os.path.join(path, "data")
            orphan.bin = os.path.dirname(sorted(glob.glob(
                "/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))[-1])
            orphan.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            orphan.destroy()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A private PostgreSQL cluster started for this test session."""
    PostgresCluster.reap_orphans()
    # `timeout` and CI runners stop pytest with SIGTERM, which skips teardown by default;
    # as KeyboardInterrupt it runs, and the cluster is stopped.
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.destroy()
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def postgres_server_url(request):
    """Superuser URL of a PostgreSQL server: VIGIL_TEST_POSTGRES_URL, else a private cluster."""
    url = os.environ.get("VIGIL_TEST_POSTGRES_URL")
    if url:
        return url
    return request.getfixturevalue("postgres_cluster").url


def _with_database(url, name):
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@contextlib.contextmanager
def scratch_database(server_url):
    """A fresh, uniquely named database on ``server_url``, dropped afterwards."""
    name = f"vigil_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(server_url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server_url):
    """A fresh database for one test module (a live gunicorn API, say), dropped after it."""
    with scratch_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(postgres_server_url):
    """A database for this session (per xdist worker too), migrated once, dropped at the end."""
    with scratch_database(postgres_server_url) as url:
        yield url


def make_app(database_url, **config):
    """An app on ``database_url`` with fast hashing and a fixed secret.

    Hashing slots are private to the test process and plentiful (tests hash in parallel on
    purpose); tests of the per-node bound set PASSWORD_HASH_CONCURRENCY themselves.
    """
    return create_app({
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": "test-secret-" + "x" * 40,
        "TESTING": True,
        "PASSWORD_HASH_CONCURRENCY": 64,
        "PASSWORD_HASH_SLOTS_DIR": _HASH_SLOTS_DIR,
        **FAST_ARGON2,
        **config,
    })


def _truncate_all(db):
    tables = [t for t in db.get_tables() if t != "schema_migrations"]
    if tables:
        db.execute_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    """Which database the test runs on."""
    return request.param


@pytest.fixture
def app_config():
    """Extra config for ``app``; override in a module to change settings."""
    return {}


@pytest.fixture
def app(backend, request, tmp_path, app_config):
    """A migrated app on SQLite (a file per test) or PostgreSQL (emptied after each test)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'vigil.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    app = make_app(url, **app_config)
    with app.app_context():
        upgrade()
    try:
        yield app
    finally:
        if backend == "postgres":
            with app.app_context():
                _truncate_all(app.extensions["vigil_database"])
        close_database(app)


@pytest.fixture
def client(app):
    return app.test_client()


class Account:
    """A registered user with a logged-in session."""

    def __init__(self, client, email, password, tokens):
        self.client, self.email, self.password, self.tokens = client, email, password, tokens

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    @property
    def refresh_headers(self):
        return {"Authorization": f"Bearer {self.tokens['refresh_token']}"}

    @property
    def id(self):
        return self.client.get("/api/v1/users/me", headers=self.headers).json["id"]


class AuthActions:
    """Register and log in users through the API, as a client would."""

    def __init__(self, client):
        self.client = client

    def register(self, email=None, password="correct horse battery"):
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        r = self.client.post("/api/v1/auth/register", json={"email": email, "password": password})
        assert r.status_code == 201, r.json
        return email, password

    def login(self, email, password):
        r = self.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.json
        return r.json

    def signup(self, email=None, password="correct horse battery"):
        """Register and log in; returns an Account."""
        email, password = self.register(email, password)
        return Account(self.client, email, password, self.login(email, password))


@pytest.fixture
def auth(client):
    return AuthActions(client)


def wait_until(predicate, timeout, interval=0.2):
    """Poll ``predicate`` until truthy or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
