"""The private PostgreSQL cluster the tests start is cleaned up even when its session dies."""
import os
import subprocess
import sys

import pytest

from tests.conftest import PostgresCluster, wait_until

pytestmark = pytest.mark.postgres

ORPHAN = """
import os, sys
sys.path[:0] = [{tests!r}, os.path.dirname({tests!r})]
from tests.conftest import PostgresCluster
cluster = PostgresCluster().start()
print(cluster.dir, flush=True)
os._exit(0)  # die without teardown, as a killed pytest would
"""


def _postmaster_pid(data_dir):
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            return int(f.readline())
    except FileNotFoundError:
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_clusters_of_dead_sessions_are_reaped():
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", ORPHAN.format(tests=tests_dir)],
                          capture_output=True, text=True, timeout=120, cwd=tests_dir)
    assert done.returncode == 0, done.stderr
    orphan_dir = done.stdout.strip().splitlines()[-1]
    postmaster = _postmaster_pid(os.path.join(orphan_dir, "data"))
    try:
        assert postmaster and _alive(postmaster)
        PostgresCluster.reap_orphans()
        assert not os.path.exists(orphan_dir)
        assert wait_until(lambda: not _alive(postmaster), timeout=30)
    finally:
        if postmaster and _alive(postmaster):
            os.kill(postmaster, 9)  # the reaper failed; do not leave the server behind
