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


DIRECT_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from prometheus_client import Counter
    from api.metrics import _request_recorder, instruments
    m = instruments()
    labels = ("GET", "200", "/r")
    record = _request_recorder(m.request_duration.labels(*labels),
                               m.request_total.labels(*labels),
                               m.request_exceptions.labels(*labels))
    assert record.__qualname__.startswith("_direct_recorder"), record.__qualname__
    for seconds in (0.001, 0.02, 0.3, 0.3, 7.0, 99.0):
        record(seconds, False)
    # Thousands of new series grow both files past their first mmap: the recorder's views
    # of the old mappings must still land in the right slots.
    filler = Counter("filler_total", "grows the counter file", ["n"], registry=None)
    for n in range(3000):
        filler.labels(str(n)).inc()
        m.request_duration.labels("GET", "200", f"/grow/{n}").observe(0.1)
    record(0.3, True)
""")


def test_direct_request_metric_writes_are_exact_after_the_files_grow(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", DIRECT_WRITER, root], env=env, check=True,
                   capture_output=True, text=True)
    assert max(p.stat().st_size for p in tmp_path.glob("*.db")) > 64 * 1024  # they grew
    values = _collect(tmp_path)
    labels = (("method", "GET"), ("route", "/r"), ("status", "200"))

    def bucket(le):
        return values[("flask_http_request_duration_seconds_bucket", (("le", le),) + labels)]

    assert values[("flask_http_request_total", labels)] == 7
    assert values[("flask_http_request_exceptions_total", labels)] == 1
    assert values[("flask_http_request_duration_seconds_count", labels)] == 7
    assert abs(values[("flask_http_request_duration_seconds_sum", labels)] - 106.921) < 1e-9
    # cumulative buckets: 0.001 and 0.02 under 0.025; three at 0.3 (a bound is inclusive)
    assert (bucket("0.005"), bucket("0.025"), bucket("0.3"), bucket("5.0"),
            bucket("10.0"), bucket("+Inf")) == (1, 2, 5, 5, 6, 7)
