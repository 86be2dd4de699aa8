"""Housekeeping of prometheus_client's multiprocess directory under gunicorn.

prometheus_client's multiprocess mode gives every worker process its own files in
``PROMETHEUS_MULTIPROC_DIR`` and merges them at scrape time; it never removes the counter
and histogram files of a dead process. Here the gunicorn master folds a dead worker's
counters and histograms into one archive file set and deletes the worker's files, so
recycled workers neither lose counts nor fill the directory (docs/adr/0010 and 0016).

The fold never runs inside gunicorn's SIGCHLD handler (where ``child_exit`` is called):
``worker_exited`` only queues the pid, and the master folds the queue from its main loop
(``pre_fork``, just before it replaces the worker). Any error is logged and counted in
``vigil_metrics_fold_errors_total``; a file that cannot be read is set aside, so it cannot
break the scrapes either.
"""
import collections
import contextlib
import errno
import fcntl
import glob
import logging
import os
import time

from prometheus_client import Counter
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger(__name__)

ARCHIVE_LOCK = "archive.lock"
#: Suffix of a file the fold could not read: no longer ``*.db``, so no scrape reads it.
UNREADABLE_SUFFIX = ".unreadable"
_LOCK_WAIT_SECONDS = 5.0


@contextlib.contextmanager
def archive_lock(path, shared):
    """flock on the archive lock: scrapes share it, folding a dead worker takes it alone.

    Waiting is bounded: a stuck holder must not stall gunicorn's master. Going ahead
    unlocked after the wait risks one scrape that double counts a dying worker or misses
    its vanished file, never a lost count.
    """
    fd = os.open(os.path.join(path, ARCHIVE_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
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


def check_readable(path):
    """Raise unless prometheus_client's own merge reads every value and key of ``path``."""
    MultiProcessCollector.merge([path], accumulate=False)


def _readable(path):
    try:
        check_readable(path)
        return True
    except Exception:  # gone, empty (a worker is creating it), truncated or garbage
        return False


class ArchiveAwareCollector:
    """prometheus_client's multiprocess merge of every file in ``path``, under the archive
    lock, skipping files it cannot read (a worker creating its file, a damaged file) rather
    than failing the whole scrape."""

    def __init__(self, path):
        self.path = path

    def collect(self):
        """Merge every worker's files and the archive into one set of metric families."""
        with archive_lock(self.path, shared=True):
            files = sorted(glob.glob(os.path.join(self.path, "*.db")))
            readable = [f for f in files if _readable(f)]
            skipped = sorted(set(files) - set(readable))
            if skipped:
                log.warning("metrics files skipped in this scrape (unreadable): %s",
                            [os.path.basename(f) for f in skipped])
            return list(MultiProcessCollector.merge(readable, accumulate=True))


def fold_process(pid, path):
    """Fold a dead process's counters and histograms into the archive; drop all its files.

    Counters and histogram buckets are sums over processes, so adding the dead process's
    values to ``counter_archive.db`` and ``histogram_archive.db`` keeps every scraped total
    exact while the directory holds one file set per live process plus one archive. Its
    gauges (live-sum pool connections) mean nothing once it is gone: prometheus_client's
    ``mark_process_dead`` removes them. A file it cannot read is moved aside (and the other
    files still folded); then UnreadableMetricsFile is raised.
    """
    unreadable = []
    with archive_lock(path, shared=False):
        for kind in ("counter", "histogram", "summary"):
            dead = os.path.join(path, f"{kind}_{pid}.db")
            try:
                _fold_file(dead, os.path.join(path, f"{kind}_archive.db"))
            except UnreadableMetricsFile:
                unreadable.append(os.path.basename(dead))
        mark_process_dead(pid, path)
        for leftover in glob.glob(os.path.join(path, f"gauge_*_{pid}.db")):
            os.remove(leftover)  # gauges of other modes (a dead process has no say)
    if unreadable:
        raise UnreadableMetricsFile(f"unreadable, set aside as *{UNREADABLE_SUFFIX}: "
                                    + ", ".join(unreadable))


class UnreadableMetricsFile(Exception):
    """A dead process's metrics file could not be read; its counts are lost."""


def _fold_file(dead, archive_path):
    if not os.path.exists(dead):
        return
    if os.path.getsize(dead) == 0:  # died before writing anything
        os.remove(dead)
        return
    try:
        check_readable(dead)  # garbage keys must never reach the archive
        values = [(key, value) for key, value, _ts, _pos
                  in MmapedDict.read_all_values_from_file(dead)]
    except Exception as e:
        os.replace(dead, dead + UNREADABLE_SUFFIX)
        raise UnreadableMetricsFile(os.path.basename(dead)) from e
    archive = MmapedDict(archive_path)
    try:
        for key, value in values:
            # read_value creates a missing key at 0, so zero-valued series survive.
            current, _ = archive.read_value(key)
            archive.write_value(key, current + value, 0.0)
    finally:
        archive.close()
    os.remove(dead)


class DeadWorkers:
    """The master's queue of dead workers whose files are still to be folded.

    ``exited`` is what gunicorn's ``child_exit`` calls, inside the master's SIGCHLD handler:
    it only appends the pid. ``fold`` runs from the master's main loop and never raises.
    """

    def __init__(self, path):
        self.path = path
        self.pending = collections.deque()
        # Created in the master, so the series exists (at 0) before the first error.
        self.errors = Counter("vigil_metrics_fold_errors_total",
                              "Dead workers whose metrics files could not be folded into the "
                              "archive (their counts are lost; see the log)", registry=None)

    def exited(self, pid):
        """A worker died (gunicorn's SIGCHLD handler): remember it, do nothing else."""
        self.pending.append(pid)

    def fold(self, logger=log):
        """Fold every queued dead worker; log and count each failure, never raise."""
        while self.pending:
            pid = self.pending.popleft()
            try:
                fold_process(pid, self.path)
            except Exception:
                self.errors.inc()
                logger.exception("could not fold the metrics of dead worker %s into the "
                                 "archive", pid)
