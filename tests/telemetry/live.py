"""What the live telemetry tests share: scrape /metrics, read the JSON log, sign users up."""
import json
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_until as wait_for  # noqa: F401 (the live tests import it here)

#: Cheap argon2, so sign-ups do not dominate the run time.
FAST_ENV = {"VIGIL_ARGON2_TIME_COST": "1", "VIGIL_ARGON2_MEMORY_KIB": "8",
            "VIGIL_ARGON2_PARALLELISM": "1"}


class Scrape(dict):
    """(sample name, frozenset of labels) -> value, from one GET /metrics."""

    def value(self, name, **labels):
        """The sample's value, or None when the series does not exist."""
        return self.get((name, frozenset(labels.items())))

    def series(self, name):
        """[(labels dict, value)] of every sample called ``name``."""
        return [(dict(labels), v) for (n, labels), v in self.items() if n == name]


def scrape(api):
    """Parse one scrape of the server's /metrics."""
    response = requests.get(f"{api.url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    out = Scrape()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def log_lines(api):
    """Every line the server wrote, parsed as JSON (a non-JSON line fails the test)."""
    lines = []
    text = api.read_log()
    # A batch of access lines may be half-way through its write() while we read: the text
    # after the last newline is a line still being written, not a broken one.
    for raw in text[:text.rfind("\n") + 1].splitlines():
        if not raw.strip():
            continue
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            pytest.fail(f"log line is not JSON: {raw!r}")
    return lines


def access_lines(api):
    """The gunicorn access log lines."""
    return [line for line in log_lines(api) if line.get("logger") == "gunicorn.access"]


def sign_up(api, password=None):
    """Register and log in a fresh user; returns (email, password, token pair)."""
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    password = password or f"pw-{uuid.uuid4().hex}"
    r = requests.post(f"{api.url}/api/v1/auth/register",
                      json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 201, r.text
    r = requests.post(f"{api.url}/api/v1/auth/login",
                      json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    return email, password, r.json()
