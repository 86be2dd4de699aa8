"""Every setting Vigil reads, with its default, loaded from ``VIGIL_*`` environment variables."""
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta

#: Defaults for every setting. ``VIGIL_<NAME>`` in the environment overrides ``<NAME>``
#: (values are parsed as JSON when they can be, so ``VIGIL_LOCKOUT_THRESHOLD=5`` is an int).
DEFAULTS = {
    "ENV": "development",
    "DATABASE_URL": None,  # None: SQLite file vigil.sqlite3 in the instance folder
    "DB_POOL_MAX": 20,
    "DB_POOL_STALE_SECONDS": 300,
    "DB_POOL_WAIT_SECONDS": 5,
    "JWT_SECRET_KEY": None,
    "ACCESS_TOKEN_TTL_SECONDS": 30 * 60,
    "REFRESH_TOKEN_TTL_SECONDS": 7 * 24 * 3600,
    # Access tokens each process remembers as verified (signature checked once, expiry on
    # every request; ADR 0057). 0 checks every token's signature on every request.
    "VERIFIED_TOKEN_CACHE_SIZE": 4096,
    "LOCKOUT_THRESHOLD": 10,
    "LOCKOUT_WINDOW_SECONDS": 15 * 60,
    # argon2id; argon2-cffi's RFC 9106 "low memory" profile, above OWASP's minimum
    "ARGON2_TIME_COST": 3,
    "ARGON2_MEMORY_KIB": 65536,
    "ARGON2_PARALLELISM": 4,
    # Password hashes running at once on the node, across processes (None: half the cores);
    # the excess is refused with 503 + Retry-After. The slot files live in this directory
    # (None: a per-user directory in the system's temporary directory).
    "PASSWORD_HASH_CONCURRENCY": None,
    "PASSWORD_HASH_SLOTS_DIR": None,
    # The CPU priority hashes run at, in a thread of their own in each process: "idle"
    # (Linux SCHED_IDLE: any other work on the node comes first), "nice" (nice 19) or
    # "normal" (in the request's thread, as any other code).
    "PASSWORD_HASH_PRIORITY": "idle",
    # Seconds a request waits for its hash at low priority before answering 503 (below
    # gunicorn's 30 s worker timeout).
    "PASSWORD_HASH_WAIT_SECONDS": 10,
    "MAX_BODY_BYTES": 1024 * 1024,
    # Reverse proxies in front of the API (nginx on the appliance: 1). Their X-Forwarded-For and
    # X-Forwarded-Proto are trusted for that many hops, so logs carry the client's address.
    "PROXY_COUNT": 0,
    # Telemetry: "off" drops request metrics, request ids and fault hooks (the benchmark's
    # baseline); LOG_LEVEL is a logging level name; REVISION labels vigil_build_info.
    "TELEMETRY": "on",
    "LOG_LEVEL": "INFO",
    "REVISION": None,  # None: `git rev-parse` of the checkout, else "unknown"
}

#: Paths that are not API traffic: no request metrics, no injected faults (health, metrics,
#: the OpenAPI document and its docs page). A regular expression matched at the path's start.
NOT_API_TRAFFIC = r"/(?:health/|metrics$|static/|api/v1/docs|api/v1/openapi\.json$)"

#: OWASP Password Storage Cheat Sheet minimum for argon2id: m=19 MiB, t=2, p=1.
OWASP_ARGON2_MIN = {"ARGON2_MEMORY_KIB": 19456, "ARGON2_TIME_COST": 2, "ARGON2_PARALLELISM": 1}


class ConfigError(RuntimeError):
    """The configuration is unsafe or invalid, so the app refuses to start."""


def load_config(app, overrides=None):
    """Fill ``app.config`` from defaults, then ``VIGIL_*`` variables, then ``overrides``."""
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("VIGIL")
    if overrides:
        app.config.update(overrides)
    cfg = app.config
    _check_telemetry_settings(cfg)
    if cfg["ENV"] not in ("development", "production"):
        raise ConfigError(f"VIGIL_ENV must be development or production, not {cfg['ENV']!r}")
    production = cfg["ENV"] == "production"
    if cfg["JWT_SECRET_KEY"] is not None:
        # from_prefixed_env parses JSON, so an all-digit key would arrive as an int
        cfg["JWT_SECRET_KEY"] = str(cfg["JWT_SECRET_KEY"])
    if not cfg["JWT_SECRET_KEY"]:
        if production:
            raise ConfigError("VIGIL_JWT_SECRET_KEY is required when VIGIL_ENV=production")
        cfg["JWT_SECRET_KEY"] = _development_secret(app.instance_path)
    if production and len(cfg["JWT_SECRET_KEY"]) < 32:
        raise ConfigError("VIGIL_JWT_SECRET_KEY must be at least 32 characters (RFC 7518 3.2)")
    if production:
        weak = [k for k, floor in OWASP_ARGON2_MIN.items() if int(cfg[k]) < floor]
        if weak:
            raise ConfigError(f"argon2 settings below OWASP's minimum in production: {weak}")
    if cfg["DATABASE_URL"] is None:
        cfg["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "vigil.sqlite3")
    cfg["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(seconds=int(cfg["ACCESS_TOKEN_TTL_SECONDS"]))
    cfg["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(seconds=int(cfg["REFRESH_TOKEN_TTL_SECONDS"]))
    cfg["JWT_TOKEN_LOCATION"] = ["headers"]
    # Tokens travel only in the Authorization header, so the CSRF double-submit claim that
    # flask-jwt-extended adds for cookies is dead weight: 60 more characters that PyJWT
    # parses four times per request.
    cfg["JWT_COOKIE_CSRF_PROTECT"] = False
    cfg["JWT_ALGORITHM"] = "HS256"
    cfg["JWT_DECODE_ALGORITHMS"] = ["HS256"]
    # One byte over the limit: werkzeug cuts a chunked body at MAX_CONTENT_LENGTH without an
    # error, so api.requests reads one byte more to tell a body at the limit from a longer one.
    cfg["MAX_CONTENT_LENGTH"] = int(cfg["MAX_BODY_BYTES"]) + 1
    if cfg["PASSWORD_HASH_PRIORITY"] not in ("idle", "nice", "normal"):
        raise ConfigError("VIGIL_PASSWORD_HASH_PRIORITY must be idle, nice or normal, not "
                          f"{cfg['PASSWORD_HASH_PRIORITY']!r}")
    size = cfg["VERIFIED_TOKEN_CACHE_SIZE"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ConfigError("VIGIL_VERIFIED_TOKEN_CACHE_SIZE must be a whole number, 0 or more, "
                          f"not {size!r}")
    if not 0 <= int(cfg["PROXY_COUNT"]) <= 5:
        raise ConfigError(f"VIGIL_PROXY_COUNT must be 0 to 5, not {cfg['PROXY_COUNT']!r}")
    # No SECRET_KEY: the API keeps no Flask session (cookie), and without a key Flask gives
    # each request a null session instead of building a signing serializer for it.
    # Always answer an unexpected exception with a problem 500 (never re-raise it, even in
    # tests): Flask's handle_exception then runs, and teardown hooks see the exception.
    cfg["PROPAGATE_EXCEPTIONS"] = False
    cfg["API_TITLE"] = "Vigil API"
    cfg["API_VERSION"] = "v1"
    cfg["OPENAPI_VERSION"] = "3.0.3"
    cfg["OPENAPI_URL_PREFIX"] = "/api/v1"
    cfg["OPENAPI_JSON_PATH"] = "openapi.json"
    cfg["OPENAPI_SWAGGER_UI_PATH"] = "docs"
    cfg["OPENAPI_SWAGGER_UI_URL"] = "/api/v1/docs/assets/"  # served by api.extensions
    return cfg


def _check_telemetry_settings(cfg):
    telemetry = str(cfg["TELEMETRY"]).strip().lower()
    if telemetry not in ("on", "off"):
        raise ConfigError(f"VIGIL_TELEMETRY must be on or off, not {cfg['TELEMETRY']!r}")
    cfg["TELEMETRY"] = telemetry
    level = str(cfg["LOG_LEVEL"]).strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise ConfigError(f"VIGIL_LOG_LEVEL must be a logging level name, not {cfg['LOG_LEVEL']!r}")
    cfg["LOG_LEVEL"] = level


def _development_secret(instance_path):
    """A random key kept in the instance folder, so every worker and restart shares it."""
    path = os.path.join(instance_path, "jwt-secret")
    os.makedirs(instance_path, exist_ok=True)
    try:
        with open(path) as f:
            key = f.read().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    # Write then link: a concurrent worker either wins the link or reads the winner's key.
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path) as f:
        return f.read().strip()


@dataclass(frozen=True)
class ServerSettings:
    """gunicorn's settings (read by gunicorn.conf.py and Vigil's gunicorn logger)."""

    bind: str
    workers: int
    worker_timeout: int
    graceful_timeout: int
    keepalive: int
    max_requests: int
    max_requests_jitter: int
    preload: bool
    log_level: str
    env: str
    telemetry: bool
    metrics_dir: str | None
    access_log_batch: int
    access_log_flush_seconds: float


def server_settings(environ=None):
    """The server's ``VIGIL_*`` settings; a bad value stops gunicorn with a clear message."""
    env = os.environ if environ is None else environ

    def text(name, default):
        return env.get(name, "").strip() or default

    def number(name, default, kind=int, low=0, high=10**9):
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise SystemExit(f"{name} must be a number from {low} to {high}, not {raw!r}")
        return value

    telemetry = text("VIGIL_TELEMETRY", "on").lower()
    if telemetry not in ("on", "off"):
        raise SystemExit(f"VIGIL_TELEMETRY must be on or off, not {telemetry!r}")
    log_level = text("VIGIL_LOG_LEVEL", "info").upper()
    if log_level not in logging.getLevelNamesMapping():
        raise SystemExit(f"VIGIL_LOG_LEVEL must be a logging level name, not {log_level!r}")
    max_requests = number("VIGIL_MAX_REQUESTS", 10000)
    return ServerSettings(
        bind=text("VIGIL_BIND", "127.0.0.1:8000"),
        workers=number("VIGIL_WORKERS", 2 * (os.cpu_count() or 1) + 1, low=1, high=1000),
        worker_timeout=number("VIGIL_WORKER_TIMEOUT", 30, low=1),
        graceful_timeout=number("VIGIL_GRACEFUL_TIMEOUT", 30, low=1),
        keepalive=number("VIGIL_KEEPALIVE", 2),
        max_requests=max_requests,
        max_requests_jitter=number("VIGIL_MAX_REQUESTS_JITTER", max_requests // 10),
        preload=text("VIGIL_PRELOAD", "off").lower() in ("1", "on", "true"),
        log_level=log_level,
        env=text("VIGIL_ENV", DEFAULTS["ENV"]),
        telemetry=telemetry == "on",
        metrics_dir=text("VIGIL_METRICS_DIR", None),
        access_log_batch=number("VIGIL_ACCESS_LOG_BATCH", 128, low=1, high=100_000),
        access_log_flush_seconds=number("VIGIL_ACCESS_LOG_FLUSH_SECONDS", 1.0, float,
                                        low=0.01, high=60.0),
    )
