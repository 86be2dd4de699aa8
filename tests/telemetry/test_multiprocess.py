"""api.telemetry.multiprocess without gunicorn: the dead-worker fold, its lock and its failures."""
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from api.telemetry.multiprocess import (
    ARCHIVE_LOCK,
    UNREADABLE_SUFFIX,
    ArchiveAwareCollector,
    DeadWorkers,
    archive_lock,
    fold_process,
)

WRITER = textwrap.dedent("""
    import os, sys
    from prometheus_client import Counter, Gauge, Histogram
    c = Counter("jobs_total", "jobs", ["kind"], registry=None)
    h = Histogram("job_seconds", "durations", buckets=(0.1, 1.0), registry=None)
    g = Gauge("pool", "pool", multiprocess_mode="livesum", registry=None)
    for _ in range(int(sys.argv[1])):
        c.labels("a").inc()
        h.observe(0.05)
    c.labels("b").inc(0)  # a zero series must survive its process
    h.observe(0.5)
    g.set(7)
    print(os.getpid())
""")


def _write(directory, n):
    """Run a process that writes metrics into ``directory`` and exits; its pid."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run([sys.executable, "-c", WRITER, str(n)], env=env, check=True,
                          capture_output=True, text=True)
    return int(done.stdout)


def _collect(directory):
    registry = CollectorRegistry()
    registry.register(ArchiveAwareCollector(str(directory)))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


def test_folded_processes_keep_their_counts_and_lose_their_files(tmp_path):
    pids = [_write(tmp_path, n) for n in (3, 5, 11)]
    before = _collect(tmp_path)
    for pid in pids[:2]:
        fold_process(pid, str(tmp_path))
        fold_process(pid, str(tmp_path))  # a second call changes nothing
    after = _collect(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([ARCHIVE_LOCK, "counter_archive.db", "histogram_archive.db",
                            f"counter_{pids[2]}.db", f"histogram_{pids[2]}.db",
                            f"gauge_livesum_{pids[2]}.db"])
    assert after[("jobs_total", (("kind", "a"),))] == 19
    assert after[("jobs_total", (("kind", "b"),))] == 0
    assert after[("job_seconds_count", ())] == 22
    assert after[("job_seconds_bucket", (("le", "0.1"),))] == 19
    assert after[("job_seconds_bucket", (("le", "1.0"),))] == 22
    # Counters and histograms unchanged by folding; the dead processes' gauges dropped.
    assert {k: v for k, v in after.items() if k[0] != "pool"} == {
        k: v for k, v in before.items() if k[0] != "pool"}
    assert before[("pool", ())] == 21 and after[("pool", ())] == 7
    fold_process(pids[2], str(tmp_path))
    assert _collect(tmp_path)[("jobs_total", (("kind", "a"),))] == 19


def test_folding_waits_for_a_running_scrape(tmp_path):
    pid = _write(tmp_path, 2)
    released = threading.Event()

    def scrape():
        with archive_lock(str(tmp_path), shared=True):
            time.sleep(0.5)
        released.set()

    reader = threading.Thread(target=scrape)
    reader.start()
    time.sleep(0.1)
    fold_process(pid, str(tmp_path))
    assert released.is_set(), "the archive was rewritten while a scrape was reading it"
    reader.join()
    assert _collect(tmp_path)[("jobs_total", (("kind", "a"),))] == 2


def test_folding_an_unknown_process_is_harmless(tmp_path):
    fold_process(424242, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [ARCHIVE_LOCK]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:100])  # the header still claims the whole used size


def _garbage(path):
    # Not random bytes: a random header may happen to say "nothing used", which reads fine.
    path.write_bytes(b"\x7f" * 4096)


def _bad_keys(path):
    # A well-formed file whose key is not prometheus_client's JSON: it must not reach the
    # archive, where it would break every later scrape.
    from prometheus_client.mmap_dict import MmapedDict

    path.unlink()
    bad = MmapedDict(str(path))
    bad.write_value("not json at all", 5.0, 0.0)
    bad.close()


@pytest.mark.parametrize("damage", [_truncate, _garbage, _bad_keys],
                         ids=["truncated", "garbage", "bad-keys"])
def test_an_unreadable_dead_worker_file_is_logged_counted_and_set_aside(tmp_path, damage,
                                                                        caplog):
    good = _write(tmp_path, 4)
    fold_process(good, str(tmp_path))  # an archive with counts already in it
    victim, survivor = _write(tmp_path, 3), _write(tmp_path, 5)
    damage(tmp_path / f"counter_{victim}.db")
    dead = DeadWorkers(str(tmp_path))
    errors_before = _errors(dead)
    for pid in (victim, survivor):
        dead.exited(pid)  # what child_exit does in the SIGCHLD handler: nothing but this
    assert (tmp_path / f"counter_{victim}.db").exists()  # no file work in the handler
    with caplog.at_level(logging.ERROR):
        dead.fold()  # must not raise: it runs in gunicorn's master
    assert _errors(dead) == errors_before + 1
    assert f"dead worker {victim}" in caplog.text
    assert not dead.pending
    names = {p.name for p in tmp_path.iterdir()}
    assert f"counter_{victim}.db{UNREADABLE_SUFFIX}" in names
    assert not any(str(victim) in n for n in names if n.endswith(".db"))
    assert not any(str(survivor) in n for n in names), "the next dead worker was not folded"
    # Scrapes work and hold every count but the unreadable file's.
    assert _collect(tmp_path)[("jobs_total", (("kind", "a"),))] == 4 + 5


def _errors(dead):
    """vigil_metrics_fold_errors_total as the counter itself reports it (this test process
    is not in multiprocess mode, so the value lives in the Counter object)."""
    return next(sample.value for family in dead.errors.collect() for sample in family.samples
                if sample.name == "vigil_metrics_fold_errors_total")


def test_an_empty_file_of_a_worker_that_died_booting_is_simply_removed(tmp_path, caplog):
    (tmp_path / "counter_777.db").write_bytes(b"")
    dead = DeadWorkers(str(tmp_path))
    dead.exited(777)
    dead.fold()
    assert not (tmp_path / "counter_777.db").exists() and "could not fold" not in caplog.text


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
def test_a_scrape_skips_an_unreadable_file_instead_of_failing(tmp_path, damage, caplog):
    _write(tmp_path, 2)
    broken = _write(tmp_path, 3)
    damage(tmp_path / f"counter_{broken}.db")
    assert _collect(tmp_path)[("jobs_total", (("kind", "a"),))] == 2
    assert f"counter_{broken}.db" in caplog.text


def test_a_scrape_skips_a_file_a_booting_worker_has_just_created(tmp_path):
    _write(tmp_path, 2)
    (tmp_path / "counter_999999.db").write_bytes(b"")
    assert _collect(tmp_path)[("jobs_total", (("kind", "a"),))] == 2
