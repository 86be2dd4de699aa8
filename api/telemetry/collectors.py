"""Metrics computed when /metrics is scraped: sessions, readiness, fault switches, processes.

These are right across workers without any file: the database holds the sessions and the
switches, readiness is asked of the same checks as GET /health/ready, and the CPU and memory
of the gunicorn master and its live workers are read from /proc.
"""
import logging
import os

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from api.faults import FAULT_KINDS, active_switches
from api.health import readiness_failures
from api.sessions import count_active_sessions

log = logging.getLogger(__name__)


class ScrapeTimeCollector:
    """The values of one app read at scrape time (a prometheus_client custom collector)."""

    def __init__(self, app, under_gunicorn=False):
        self.app = app
        self.under_gunicorn = under_gunicorn

    def collect(self):
        """Yield the scrape-time metric families."""
        with self.app.app_context():
            yield from self._sessions()
            yield self._readiness()
            yield self._faults()
        # A gunicorn worker's parent is the master (read now: with preload_app the app was
        # built in the master itself).
        yield from process_metrics(os.getppid() if self.under_gunicorn else None)

    def _sessions(self):
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
        # The same checks as GET /health/ready (they have no side effects), so an alert sees
        # what a load balancer sees.
        family = GaugeMetricFamily("vigil_ready", "1 when every readiness check passes, else 0")
        family.add_metric((), 0 if readiness_failures() else 1)
        return family

    def _faults(self):
        active = active_switches(self.app) if "vigil_faults" in self.app.extensions else {}
        family = GaugeMetricFamily("vigil_fault_active", "1 while a fault switch is on",
                                   labels=("kind",))
        for kind in FAULT_KINDS:
            family.add_metric((kind,), 1 if kind in active else 0)
        return family


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
    times), so it does not fall back each time a worker is recycled. Without a master (one
    process: flask run, tests) only the current process is reported.
    """
    procs = [("worker", psutil.Process(os.getpid()))]
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
        cpu.add_metric((role, str(proc.pid)), _cpu(times, False))
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
