"""gunicorn settings for Vigil's API: VIGIL_* environment, JSON logs, exact multiprocess metrics.

Every setting comes from api.config.server_settings. Every worker writes its metrics to
PROMETHEUS_MULTIPROC_DIR: a directory private to one gunicorn run (VIGIL_METRICS_DIR, or a
fresh temporary one), wiped when the master starts. When a worker exits the master queues
it, and folds its counters into an archive before it forks the next worker
(api.telemetry.multiprocess), so recycling keeps counts exact and the directory bounded.
"""
from api.config import server_settings

_settings = server_settings()
_dead_workers = None

if _settings.telemetry:
    # Before anything imports prometheus_client: it picks multiprocess mode at import.
    from api.telemetry import metrics_directory as _metrics_directory

    _metrics_directory.prepare(_settings.metrics_dir)

    from api.telemetry.multiprocess import DeadWorkers

    # The master's queue of dead workers to fold (a HUP reload starts a new one).
    _dead_workers = DeadWorkers(_metrics_directory.current())

bind = _settings.bind
workers = _settings.workers
# gunicorn's sync worker, plus an access line for requests refused before they were parsed.
worker_class = "api.telemetry.access.SyncWorker"
timeout = _settings.worker_timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# Recycling bounds slow leaks; the metrics archive keeps it from costing exactness.
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter
proc_name = "vigil-api"
# Load the app once in the master and fork workers from it: faster worker (re)starts,
# at the price of every worker sharing anything the factory opened. Off by default.
preload_app = _settings.preload

loglevel = _settings.log_level.lower()
logger_class = "api.telemetry.access.GunicornLogger"
errorlog = "-"
# One JSON access line per request (api.telemetry.access), written in batches.
accesslog = "-" if _settings.telemetry else None


def on_starting(server):
    """Say where the metrics live."""
    if _dead_workers is not None:
        server.log.info("metrics directory %s", _dead_workers.path)


def post_worker_init(worker):
    """In the booted worker: write queued access lines every flush interval."""
    worker.log.start_access_flusher()


def worker_exit(server, worker):
    """Write the access lines the worker still holds (it exits normally, recycles or timed out)."""
    worker.log.close_access()


def child_exit(server, worker):
    """Runs in the master's SIGCHLD handler: only queue the dead worker (no file work here)."""
    if _dead_workers is not None:
        _dead_workers.exited(worker.pid)


def pre_fork(server, worker):
    """From the master's main loop, before a worker is (re)started: fold the dead ones."""
    if _dead_workers is not None:
        _dead_workers.fold(server.log)


def on_exit(server):
    """Fold what is left, then remove the metrics directory if this run created it."""
    if _dead_workers is not None:
        _dead_workers.fold(server.log)
        _metrics_directory.remove()
