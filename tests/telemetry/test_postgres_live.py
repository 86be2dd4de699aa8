"""Telemetry on PostgreSQL under gunicorn: pool gauges summed over workers, faults from the DB."""
import uuid

import pytest
import requests

from tests.servers import run_api
from tests.telemetry.live import FAST_ENV, scrape, sign_up, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.stack]

WORKERS = 3
POOL_MAX = 7


def test_pool_gauges_sum_live_workers(tmp_path, module_postgres_url):
    env = {**FAST_ENV, "VIGIL_DATABASE_URL": module_postgres_url,
           "VIGIL_DB_POOL_MAX": str(POOL_MAX)}
    with run_api(tmp_path, workers=WORKERS, env=env) as api:
        sign_up(api)
        # Reach every worker with a database request, so each one has a pool to report.
        for _ in range(60):
            requests.post(f"{api.url}/api/v1/auth/login", timeout=30,
                          json={"email": "nobody@example.com", "password": "x" * 12})

        def all_reported():
            m = scrape(api)
            return m if m.value("vigil_db_pool_connections", state="max") == WORKERS * POOL_MAX \
                else None

        metrics = wait_for(all_reported, 10)
        assert metrics is not None, "not every worker reported its pool"
        in_use = metrics.value("vigil_db_pool_connections", state="in_use")
        idle = metrics.value("vigil_db_pool_connections", state="idle")
        # Sync workers hold at most one connection each: the scraping worker's, at most.
        assert 0 <= in_use <= 1 and 1 <= idle <= WORKERS
        assert metrics.value("vigil_active_sessions") == 1
        assert metrics.value("vigil_db_errors_total") == 0

        # Fault switches work the same from PostgreSQL.
        api.flask("faults", "error", "--ratio", "1", "--for", "1m", check=True)
        assert wait_for(lambda: requests.get(f"{api.url}/api/v1/content/{uuid.uuid4()}",
                                             timeout=30).status_code == 500, 6)
        api.flask("faults", "clear", check=True)
