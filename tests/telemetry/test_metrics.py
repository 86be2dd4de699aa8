"""api.metrics without gunicorn: folding dead processes into the archive, the archive lock."""
import os
import subprocess
import sys
import textwrap
import threading
import time

from prometheus_client import CollectorRegistry

from api.metrics import ARCHIVE_LOCK, LockedMultiProcessCollector, archive_lock, retire_process

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
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run([sys.executable, "-c", WRITER, str(n)], env=env, check=True,
                          capture_output=True, text=True)
    return int(done.stdout)


def _collect(directory):
    registry = CollectorRegistry()
    LockedMultiProcessCollector(registry, path=str(directory))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


def test_retired_processes_keep_their_counts_and_lose_their_files(tmp_path):
    pids = [_write(tmp_path, n) for n in (3, 5, 11)]
    before = _collect(tmp_path)
    for pid in pids[:2]:
        retire_process(pid, str(tmp_path))
        retire_process(pid, str(tmp_path))  # a second call changes nothing
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
    # Counters and histograms unchanged by retiring; the dead processes' gauges dropped.
    assert {k: v for k, v in after.items() if k[0] != "pool"} == {
        k: v for k, v in before.items() if k[0] != "pool"}
    assert before[("pool", ())] == 21 and after[("pool", ())] == 7
    retire_process(pids[2], str(tmp_path))
    assert _collect(tmp_path)[("jobs_total", (("kind", "a"),))] == 19


def test_retiring_waits_for_a_running_scrape(tmp_path):
    pid = _write(tmp_path, 2)
    released = threading.Event()

    def scrape():
        with archive_lock(str(tmp_path), shared=True):
            time.sleep(0.5)
        released.set()

    reader = threading.Thread(target=scrape)
    reader.start()
    time.sleep(0.1)
    retire_process(pid, str(tmp_path))
    assert released.is_set(), "the archive was rewritten while a scrape was reading it"
    reader.join()
    assert _collect(tmp_path)[("jobs_total", (("kind", "a"),))] == 2


def test_retiring_an_unknown_process_is_harmless(tmp_path):
    retire_process(424242, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [ARCHIVE_LOCK]
