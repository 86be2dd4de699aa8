"""Prometheus metrics for the API, exact across gunicorn's worker processes.

HTTP request metrics go through prometheus-flask-exporter (its /metrics endpoint and
exclusion decorators) with Vigil's own lean request hooks, so all three request metrics
carry ``method``, ``status`` and the route template. Under gunicorn every worker writes
its values to mmap files in PROMETHEUS_MULTIPROC_DIR; when a worker dies the master folds
its counters and histograms into one archive file set (``retire_process``), so recycled
workers neither lose counts nor leave files behind. Values that only make sense at scrape
time (sessions, process CPU and memory, build info, active faults) come from a collector
that computes them when /metrics is read.
"""
import contextlib
import errno
import fcntl
import glob
import importlib.metadata
import logging
import os
import subprocess
import time
from bisect import bisect_left
from pathlib import Path

import psutil
from flask import current_app
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import PrometheusMetrics
from werkzeug.exceptions import HTTPException

from api import events
from api.db import pool_stats
from api.logs import note_exception, on_request_end, route_template, telemetry_enabled

log = logging.getLogger(__name__)

#: Resolve the 300 ms latency objective exactly (0.3 is a bucket boundary).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
AUTH_EVENTS = ("login_success", "login_failure", "lockout", "refresh", "refresh_reuse", "logout")
FAULT_KINDS = ("error", "latency", "readiness")
#: Methods outside this set share the label "other", so clients cannot mint series.
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
#: Routes that are not API traffic: no request metrics, no fault injection.
EXCLUDED_PREFIXES = ("/health/", "/metrics", "/static/")
EXCLUDED_BLUEPRINTS = ("api-docs",)
ARCHIVE_LOCK = "archive.lock"
_LOCK_WAIT_SECONDS = 5.0

#: Set in each worker by gunicorn.conf.py's post_fork: whose children are the workers.
gunicorn_master_pid = None

# Single-process mode (flask run, the test client, CLI) keeps values in this registry.
_REGISTRY = CollectorRegistry(auto_describe=False)
_instruments = None


def multiprocess_dir():
    """The gunicorn multiprocess directory, or None when running as a single process."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


# prometheus_client asks os.getpid() (a system call) on every increment to notice forks.
# A pid cached here and refreshed in every forked child answers the same, for free.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
if multiprocess_dir():
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _pid[0])


class _Instruments:
    """Every metric this process writes; built once per process, after gunicorn forked."""

    def __init__(self):
        registry = None if multiprocess_dir() else _REGISTRY
        labels = ("method", "status", "route")
        self.request_duration = Histogram(
            "flask_http_request_duration_seconds", "HTTP request duration in seconds",
            labels, buckets=REQUEST_BUCKETS, registry=registry)
        self.request_total = Counter(
            "flask_http_request_total", "HTTP requests answered", labels, registry=registry)
        self.request_exceptions = Counter(
            "flask_http_request_exceptions_total",
            "HTTP requests whose handler raised an exception", labels, registry=registry)
        self.auth_events = Counter(
            "vigil_auth_events_total", "Authentication events", ("event",), registry=registry)
        self.db_duration = Histogram(
            "vigil_db_query_duration_seconds", "SQL statement duration in seconds",
            buckets=DB_BUCKETS, registry=registry)
        self.db_errors = Counter(
            "vigil_db_errors_total", "SQL statements the database rejected or failed",
            registry=registry)
        self.pool = Gauge(
            "vigil_db_pool_connections", "Database pool connections by state",
            ("state",), multiprocess_mode="livesum", registry=registry)
        self.faults_injected = Counter(
            "vigil_faults_injected_total", "Faults injected by the fire-drill switches",
            ("kind",), registry=registry)
        # Series that alerts and dashboards divide by must exist before the first event.
        self.auth_children = {e: self.auth_events.labels(e) for e in AUTH_EVENTS}
        self.fault_children = {k: self.faults_injected.labels(k) for k in FAULT_KINDS}
        self.last_pool = None  # pool gauges appear once a pooled database reports


def instruments():
    """This process's metrics, created on first use."""
    global _instruments
    if _instruments is None:
        _instruments = _Instruments()
        events.auth_event.connect(_on_auth_event, weak=False)
        events.query_executed.connect(_on_query, weak=False)
    return _instruments


def count_fault(kind):
    """Count one injected fault of ``kind`` (error, latency, readiness)."""
    instruments().fault_children[kind].inc()


def _on_auth_event(sender, event=None, **_):
    child = instruments().auth_children.get(event)
    if child is not None:
        child.inc()


def _on_query(sender, duration=0.0, failed=False, **_):
    metrics = instruments()
    metrics.db_duration.observe(duration)
    if failed:
        metrics.db_errors.inc()
    _update_pool(metrics)


def _update_pool(metrics):
    stats = pool_stats()
    if stats is not None and stats != metrics.last_pool:
        metrics.last_pool = stats
        for state in ("in_use", "idle", "max"):
            metrics.pool.labels(state).set(stats[state])


def _route_label(rule):
    """The route label for ``rule``, or None when the route is excluded from metrics."""
    if rule is None:
        return "unmatched"
    template = route_template(rule)
    if template.startswith(EXCLUDED_PREFIXES) or template == "/metrics":
        return None
    if rule.endpoint.split(".", 1)[0] in EXCLUDED_BLUEPRINTS:
        return None
    return template


def is_tracked(rule):
    """True for API traffic (request metrics and faults apply), False for health/metrics/docs."""
    return _route_label(rule) is not None


def _slot(value):
    """(mmap, index in doubles) of a prometheus_client MmapedValue's slot in its process file.

    prometheus_client keeps every value 8-byte aligned, so a view of the mmap cast to
    doubles reaches it by index: ``view[index] += 1`` is an in-place 8-byte store, with no
    lock, no pid check, no struct packing and no method call. A sync gunicorn worker runs
    one request at a time and no other code writes request metrics, so nothing races it.
    A file that grows later gets a new, larger mmap; a view of the old one keeps mapping
    the same file pages, so its slots stay right.
    """
    mmaped = value._file
    position = mmaped._positions[value._key]
    if position % 8:
        raise TypeError("unaligned metric value")
    return mmaped._m, position // 8


def _request_recorder(histogram, total, exceptions):
    """``record(seconds, failed)``: one request's samples for one (method, status, route).

    Multiprocess mode adds to the histogram sum, the bucket (found by bisection instead of
    prometheus_client's linear walk) and the counters in place in their mmap slots; in one
    process, or with a prometheus_client whose internals differ, it uses the public
    ``observe``/``inc``.
    """
    if multiprocess_dir():
        try:
            return _direct_recorder(histogram, total, exceptions)
        except (AttributeError, KeyError, TypeError):  # pragma: no cover - other client
            log.warning("prometheus_client internals changed; request metrics use its API")

    def record(seconds, failed):
        histogram.observe(seconds)
        total.inc()
        if failed:
            exceptions.inc()
    return record


def _direct_recorder(histogram, total, exceptions):
    # A public read first: after a fork (preloaded app) it moves every value of this
    # process to the process's own files before their slots are looked up.
    total._value.get()
    bounds = tuple(histogram._upper_bounds)  # sorted, ends with +Inf
    if len(bounds) != len(histogram._buckets) or bounds[-1] != float("inf"):
        raise TypeError("unexpected histogram layout")
    slots = [_slot(value) for value in (histogram._sum, *histogram._buckets)]
    if any(mmap is not slots[0][0] for mmap, _ in slots):
        raise TypeError("histogram values in different files")
    hist = memoryview(slots[0][0]).cast("d")
    sum_at = slots[0][1]
    bucket_at = tuple(index for _, index in slots[1:])
    counter_mmap, count_at = _slot(total._value)
    exception_mmap, exception_at = _slot(exceptions._value)
    counters = memoryview(counter_mmap).cast("d")
    failures = counters if exception_mmap is counter_mmap else memoryview(exception_mmap).cast("d")

    def record(seconds, failed):
        hist[sum_at] += seconds
        # The first bound >= seconds: the bucket Histogram.observe would pick.
        hist[bucket_at[bisect_left(bounds, seconds)]] += 1.0
        counters[count_at] += 1.0
        if failed:
            failures[exception_at] += 1.0
    return record


# Each app's (method, status line, rule) -> recorder caches, emptied in a forked child:
# the child's values live in files of its own pid, found again on first use.
_series_caches = []
os.register_at_fork(after_in_child=lambda: [cache.clear() for cache in _series_caches])


def _register_request_hooks(app):
    metrics = instruments()
    # Bounded: methods are normalised, statuses and rules come from our own code.
    series = {}
    _series_caches.append(series)

    def _new_series(method, status, rule):
        route = _route_label(rule)
        if route is None:
            return None
        labels = (method if method in KNOWN_METHODS else "other", status.split(" ", 1)[0], route)
        return _request_recorder(metrics.request_duration.labels(*labels),
                                 metrics.request_total.labels(*labels),
                                 metrics.request_exceptions.labels(*labels))

    def observe(environ, facts, seconds):
        status = facts.status
        if status is None:  # the app raised before starting a response: nothing was sent
            return
        rule = facts.rule
        key = (environ.get("REQUEST_METHOD"), status, rule.rule if rule is not None else None)
        record = series.get(key, False)
        if record is False:  # None means: an excluded route
            record = series[key] = _new_series(key[0], status, rule)
        if record is not None:
            record(seconds, facts.failed)

    on_request_end(app, observe)

    if pool_stats() is not None:
        def update_pool(exc):
            # App-context teardowns run last, and in reverse order of registration, so this
            # runs after the API released its connection: the pool as it is between requests.
            _update_pool(metrics)

        app.teardown_appcontext(update_pool)

    handle_user_exception = app.handle_user_exception

    def mark_exception(e):
        # The API turns every exception into a problem response with its own error
        # handlers, so Flask's teardown never sees it: note it on the way in instead.
        if not isinstance(e, HTTPException):
            note_exception()
        return handle_user_exception(e)

    app.handle_user_exception = mark_exception


@contextlib.contextmanager
def archive_lock(directory, shared):
    """flock on the archive lock: scrapes share it, folding a dead worker takes it alone.

    Waiting is bounded: a stuck holder must not stall gunicorn's master. Going ahead
    unlocked after the wait risks one scrape that double counts a dying worker or fails
    on its vanished file, never a lost count.
    """
    fd = os.open(os.path.join(directory, ARCHIVE_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    log.warning("metrics archive lock not taken: %s", e)
                    break
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)


class LockedMultiProcessCollector(MultiProcessCollector):
    """prometheus_client's multiprocess collector, reading under the archive lock."""

    def collect(self):
        """Merge every worker's files and the archive into one set of samples."""
        with archive_lock(self._path, shared=True):
            files = [path for path in glob.glob(os.path.join(self._path, "*.db"))
                     if _has_values_header(path)]
            return list(self.merge(files, accumulate=True))


def _has_values_header(path):
    """False for a file a booting worker has created but not sized yet (nothing in it).

    prometheus_client creates a worker's file, then grows it and writes its header; a
    scrape in between would fail on the empty file. Skipping it loses no value.
    """
    try:
        return os.path.getsize(path) >= 8
    except FileNotFoundError:
        return False


def retire_process(pid, directory=None):
    """Fold a dead process's counters and histograms into the archive; drop all its files.

    Called from gunicorn's ``child_exit`` in the master. Counters and histogram buckets are
    sums over processes, so adding the dead worker's values to ``counter_archive.db`` and
    ``histogram_archive.db`` keeps every scraped total exact while the directory holds one
    file set per live worker plus one archive, however often workers are recycled. Gauges of
    a dead process (live-sum pool connections) are meaningless once it is gone: dropped.
    """
    directory = directory or multiprocess_dir()
    if not directory:
        return
    with archive_lock(directory, shared=False):
        for kind in ("counter", "histogram", "summary"):
            path = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(path):
                continue
            if not _has_values_header(path):  # died before writing anything
                os.remove(path)
                continue
            archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
            try:
                for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(path):
                    # read_value creates the key at 0, so zero-valued series survive too.
                    current, _ = archive.read_value(key)
                    archive.write_value(key, current + value, 0.0)
            finally:
                archive.close()
            os.remove(path)
        for path in glob.glob(os.path.join(directory, f"gauge_*_{pid}.db")):
            os.remove(path)


def _git_revision():
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return "unknown"
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def build_info():
    """(version, revision): the installed package version and the git commit deployed."""
    try:
        version = importlib.metadata.version("vigil")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return version, os.environ.get("VIGIL_REVISION") or _git_revision()


class ScrapeTimeCollector:
    """Values read when /metrics is scraped: sessions, faults, build, process CPU and memory."""

    def __init__(self, build):
        self.build = build

    def collect(self):
        """Yield the scrape-time metric families."""
        info = GaugeMetricFamily("vigil_build_info", "Version and git revision of the API",
                                 labels=("version", "revision"))
        info.add_metric(self.build, 1)
        yield info
        yield from self._sessions()
        yield from self._readiness()
        yield from self._faults()
        yield from process_metrics(gunicorn_master_pid)

    def _sessions(self):
        from api.sessions import count_active_sessions

        try:
            count = count_active_sessions()
        except Exception as e:  # the scrape must still report everything else
            log.warning("vigil_active_sessions not collected: %s", type(e).__name__)
            return
        family = GaugeMetricFamily(
            "vigil_active_sessions", "Live, unrevoked refresh sessions (from the database)")
        family.add_metric((), count)
        yield family

    def _readiness(self):
        from api.health import readiness_failures

        # The same checks as GET /health/ready, so an alert sees what a load balancer sees.
        family = GaugeMetricFamily("vigil_ready", "1 when every readiness check passes, else 0")
        family.add_metric((), 0 if readiness_failures() else 1)
        yield family

    def _faults(self):
        from api.faults import active_switches

        active = active_switches(current_app._get_current_object())
        family = GaugeMetricFamily("vigil_fault_active", "1 while a fault switch is on",
                                   labels=("kind",))
        for kind in FAULT_KINDS:
            family.add_metric((kind,), 1 if kind in active else 0)
        yield family


def _cpu(times, with_reaped_children):
    total = times.user + times.system
    if with_reaped_children:
        total += times.children_user + times.children_system
    return total


def process_metrics(master_pid):
    """CPU and RSS of the gunicorn master and its live workers: summed and per process.

    prometheus_client's process collector only sees the scraping process, and multiprocess
    mode drops it. Here the scraping worker reads the master and the master's current
    children from /proc, so dead workers' pids never linger as series. The summed CPU
    counter adds the CPU of workers the master already reaped (the kernel's children
    times), so it does not fall back each time a worker is recycled.
    """
    procs = [("worker", psutil.Process())]
    if master_pid:
        try:
            master = psutil.Process(master_pid)
            procs = [("master", master)] + [("worker", p) for p in master.children()]
        except psutil.Error:  # the master is gone; this worker is about to exit too
            pass
    cpu = CounterMetricFamily("vigil_process_cpu_seconds_total",
                              "CPU seconds (user+system) per gunicorn process",
                              labels=("role", "pid"))
    rss = GaugeMetricFamily("vigil_process_resident_memory_bytes",
                            "Resident memory per gunicorn process", labels=("role", "pid"))
    cpu_sum = rss_sum = 0.0
    start = None
    for role, proc in procs:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                resident = proc.memory_info().rss
                if start is None:
                    start = proc.create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        own = _cpu(times, False)
        cpu.add_metric((role, str(proc.pid)), own)
        rss.add_metric((role, str(proc.pid)), resident)
        cpu_sum += _cpu(times, role == "master")
        rss_sum += resident
    yield cpu
    yield rss
    total_cpu = CounterMetricFamily(
        "process_cpu_seconds_total",
        "CPU seconds of the gunicorn master and all its workers, including recycled ones")
    total_cpu.add_metric((), cpu_sum)
    yield total_cpu
    total_rss = GaugeMetricFamily("process_resident_memory_bytes",
                                  "Resident memory of the gunicorn master and live workers")
    total_rss.add_metric((), rss_sum)
    yield total_rss
    if start is not None:
        started = GaugeMetricFamily("process_start_time_seconds",
                                    "Start time of the gunicorn master, seconds since the epoch")
        started.add_metric((), start)
        yield started


class _ExporterMixin:
    """Vigil's choices on top of prometheus-flask-exporter's endpoint and decorators."""

    def export_defaults(self, *args, app=None, **kwargs):
        """Install the lean request hooks instead of the exporter's defaults.

        The exporter's own counters lack the route label and its hooks cost several
        microseconds more per request (see docs/adr/0011-lean-request-metrics.md).
        """
        _register_request_hooks(app or self.app)

    def generate_metrics(self, accept_header=None, names=None):
        """Render every metric in the format the scraper asked for."""
        from prometheus_client.exposition import choose_encoder

        directory = multiprocess_dir()
        if directory:
            registry = CollectorRegistry(auto_describe=False)
            LockedMultiProcessCollector(registry, path=directory)
            registry.register(self.scrape_time)
        else:
            registry = self.registry
        if names:
            registry = registry.restricted_registry(names)
        encode, content_type = choose_encoder(accept_header)
        return encode(registry).decode("utf-8"), content_type


class _SingleProcessMetrics(_ExporterMixin, PrometheusMetrics):
    pass


def _exporter_class():
    if multiprocess_dir():
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        class _GunicornMetrics(_ExporterMixin, GunicornInternalPrometheusMetrics):
            pass

        return _GunicornMetrics
    return _SingleProcessMetrics


_scrape_time = None


def init_app(app):
    """Request metrics, the vigil_* metrics and GET /metrics on ``app``."""
    global _scrape_time
    if not telemetry_enabled(app):
        return
    instruments()
    if _scrape_time is None:
        _scrape_time = ScrapeTimeCollector(build_info())
        if not multiprocess_dir():
            _REGISTRY.register(_scrape_time)
    cls = _exporter_class()
    exporter = cls.for_app_factory(
        path="/metrics", registry=CollectorRegistry() if multiprocess_dir() else _REGISTRY)
    exporter.scrape_time = _scrape_time
    exporter.init_app(app)
    app.extensions["vigil_metrics"] = exporter
