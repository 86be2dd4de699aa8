"""gunicorn settings for Vigil's API: VIGIL_* environment, JSON logs, exact multiprocess metrics.

Every worker writes its metrics to PROMETHEUS_MULTIPROC_DIR. The directory is private to
one gunicorn run (VIGIL_METRICS_DIR, or a fresh temporary directory) and wiped when the
master starts; when a worker exits the master folds its counters into an archive and
deletes its files (api.metrics.retire_process), so recycling workers keeps counts exact
and the directory bounded.
"""
import glob
import multiprocessing
import os
import shutil
import tempfile


def _env_int(name, default):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, not {value!r}") from None


def _metrics_dir():
    chosen = os.environ.get("VIGIL_METRICS_DIR") or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        return chosen, False
    return tempfile.mkdtemp(prefix="vigil-metrics-"), True


_telemetry = os.environ.get("VIGIL_TELEMETRY", "on").strip().lower()
if _telemetry not in ("on", "off"):
    raise SystemExit(f"VIGIL_TELEMETRY must be on or off, not {_telemetry!r}")

# The environment is set before anything imports prometheus_client, which picks its
# multiprocess value class at import time. A config reload (HUP) keeps the same directory.
# Wiped here, at the first load, before a preloaded app could create files in it.
if _telemetry == "on" and "_VIGIL_METRICS_DIR_OWNED" not in os.environ:
    _dir, _owned = _metrics_dir()
    os.makedirs(_dir, exist_ok=True)
    for _stale in glob.glob(os.path.join(_dir, "*.db")):
        os.remove(_stale)  # counts of an earlier run belong to pids that are gone
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _dir
    os.environ["_VIGIL_METRICS_DIR_OWNED"] = "1" if _owned else "0"

bind = os.environ.get("VIGIL_BIND", "127.0.0.1:8000")
workers = _env_int("VIGIL_WORKERS", 2 * multiprocessing.cpu_count() + 1)
worker_class = "sync"
timeout = _env_int("VIGIL_WORKER_TIMEOUT", 30)
graceful_timeout = _env_int("VIGIL_GRACEFUL_TIMEOUT", 30)
keepalive = _env_int("VIGIL_KEEPALIVE", 2)
# Recycling bounds slow leaks; the metrics archive keeps it from costing exactness.
max_requests = _env_int("VIGIL_MAX_REQUESTS", 10000)
max_requests_jitter = _env_int("VIGIL_MAX_REQUESTS_JITTER", max_requests // 10)
proc_name = "vigil-api"
# Load the app once in the master and fork workers from it: faster worker (re)starts,
# at the price of every worker sharing anything the factory opened. Off by default.
preload_app = os.environ.get("VIGIL_PRELOAD", "off").strip().lower() in ("1", "on", "true")

loglevel = os.environ.get("VIGIL_LOG_LEVEL", "info").lower()
logger_class = "api.logs.GunicornLogger"
errorlog = "-"
# The access log is the one line per request (JSON, see api.logs.GunicornLogger.access),
# written in batches: every VIGIL_ACCESS_LOG_BATCH requests (default 128, 1 = each at once),
# every VIGIL_ACCESS_LOG_FLUSH_SECONDS (default 1), and when a worker exits (worker_exit).
accesslog = "-" if _telemetry == "on" else None


def on_starting(server):
    """Say where the metrics live (wiped when this file was first loaded)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        server.log.info("metrics directory %s", directory)


def post_fork(server, worker):
    """Tell the worker whose children the gunicorn workers are (for per-process metrics)."""
    import api.metrics

    api.metrics.gunicorn_master_pid = server.pid


def worker_exit(server, worker):
    """Write the access lines the worker still holds (it exits normally, recycles or timed out)."""
    worker.log.flush_access()


def child_exit(server, worker):
    """Fold the dead worker's counters into the archive and delete its files."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from api.metrics import retire_process

        try:
            retire_process(worker.pid)
        except OSError:
            # Never let bookkeeping take the master down; the files stay and still count.
            server.log.exception("could not archive the metrics of worker %s", worker.pid)


def on_exit(server):
    """Remove the metrics directory when this run created it."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and os.environ.get("_VIGIL_METRICS_DIR_OWNED") == "1":
        shutil.rmtree(directory, ignore_errors=True)
