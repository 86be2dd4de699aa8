"""Worker recycling: hundreds of dead workers, exact counters, a bounded metrics directory."""
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from tests.servers import run_api
from tests.telemetry.live import access_lines, scrape, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]

WORKERS = 4
MAX_REQUESTS = 2
REQUESTS = 600
SCRAPE_EVERY = 100
#: A file set (counter, histogram, max gauge) per live worker and for the master (the app is
#: preloaded there; it also holds the fold-error counter), the two archives, the lock.
#: Without the archive this grows by a file set per dead worker: over a thousand files here.
MAX_FILES = (WORKERS + 1) * 3 + 2 + 1


def test_recycled_workers_keep_exact_counts_in_a_bounded_directory(tmp_path):
    # Preloading makes a worker (re)start a fork instead of an app import, so hundreds of
    # recycles take seconds; the archive path is the same as without preload.
    env = {"VIGIL_PRELOAD": "on", "VIGIL_MAX_REQUESTS": str(MAX_REQUESTS),
           "VIGIL_MAX_REQUESTS_JITTER": "0"}
    with run_api(tmp_path, workers=WORKERS, env=env) as api:
        labels = {"method": "GET", "route": "unmatched", "status": "404"}
        count = "flask_http_request_duration_seconds_count"
        seen = []
        largest_directory = 0
        with ThreadPoolExecutor(WORKERS) as pool:
            for batch in range(0, REQUESTS, SCRAPE_EVERY):
                statuses = pool.map(
                    lambda i: requests.get(f"{api.url}/recycle/{i}", timeout=30).status_code,
                    range(batch, batch + SCRAPE_EVERY))
                assert list(statuses) == [404] * SCRAPE_EVERY
                # Every answered request was counted before its response left the worker,
                # so each scrape is exact, even while workers die around it.
                seen.append(scrape(api).value(count, **labels))
                largest_directory = max(largest_directory,
                                        len(list(api.metrics_dir.iterdir())))
        assert seen == list(range(SCRAPE_EVERY, REQUESTS + 1, SCRAPE_EVERY))

        def recycled_lines():
            return [line for line in access_lines(api) if line["path"].startswith("/recycle/")]

        # Each worker writes its queued access lines when it exits: none is lost or doubled.
        assert wait_for(lambda: len(recycled_lines()) >= REQUESTS, 15)
        assert sorted(line["path"] for line in recycled_lines()) == sorted(
            f"/recycle/{i}" for i in range(REQUESTS))
        pids = {line["pid"] for line in access_lines(api)}
        assert len(pids) >= 250, f"only {len(pids)} workers served requests"
        final = scrape(api)
        assert final.value(count, **labels) == REQUESTS
        assert final.value("flask_http_request_total", method="GET", status="404") == REQUESTS
        assert final.value("vigil_metrics_fold_errors_total") == 0
        names = sorted(p.name for p in api.metrics_dir.iterdir())
        assert largest_directory <= MAX_FILES and len(names) <= MAX_FILES, names
        assert "counter_archive.db" in names and "histogram_archive.db" in names
        # Per-process series name only processes alive around the scrape (a scrape itself
        # may recycle a worker here), never the hundreds that died.
        before = {p.pid for p in psutil.Process(api.pid).children()}
        reported = {int(lbl["pid"]) for lbl, _ in scrape(api).series(
            "vigil_process_cpu_seconds_total")}
        after = {p.pid for p in psutil.Process(api.pid).children()}
        assert api.pid in reported and len(reported) <= WORKERS + 1
        assert reported <= {api.pid} | before | after


def test_a_damaged_dead_worker_file_never_takes_the_master_down(tmp_path):
    with run_api(tmp_path, workers=2) as api:
        for _ in range(10):
            requests.get(f"{api.url}/no/such/page", timeout=30)
        victim = psutil.Process(api.pid).children()[0].pid
        damaged = api.metrics_dir / f"counter_{victim}.db"
        assert wait_for(damaged.exists, 10)
        # Stopped first, so the worker cannot rewrite the file we damage before it dies.
        os.kill(victim, signal.SIGSTOP)
        damaged.write_bytes(b"\x7f" * 4096)
        os.kill(victim, signal.SIGKILL)

        def replaced():
            children = {p.pid for p in psutil.Process(api.pid).children()}
            return len(children) == 2 and victim not in children

        assert wait_for(replaced, 30)
        assert api.process.poll() is None, "the gunicorn master died"
        assert requests.get(f"{api.url}/health/live", timeout=30).status_code == 200
        metrics = scrape(api)
        assert metrics.value("vigil_metrics_fold_errors_total") == 1
        assert (api.metrics_dir / f"counter_{victim}.db.unreadable").exists()
        assert f"could not fold the metrics of dead worker {victim}" in api.read_log()
        # The victim's histogram file was folded; the scrape still works and counts on.
        before = metrics.value("flask_http_request_duration_seconds_count", method="GET",
                               route="unmatched", status="404")
        requests.get(f"{api.url}/no/such/page", timeout=30)
        after = scrape(api).value("flask_http_request_duration_seconds_count", method="GET",
                                  route="unmatched", status="404")
        assert before == 10 and after == 11
