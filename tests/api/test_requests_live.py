"""Request checks through real gunicorn: chunked bodies reach the app as a stream, not a size."""
import pytest
import requests

from tests.servers import run_api

pytestmark = pytest.mark.stack

LIMIT = 1024 * 1024
FAST_ARGON2_ENV = {"VIGIL_ARGON2_TIME_COST": "1", "VIGIL_ARGON2_MEMORY_KIB": "8",
                   "VIGIL_ARGON2_PARALLELISM": "1"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with run_api(tmp_path_factory.mktemp("requests-live"), workers=2,
                 env=FAST_ARGON2_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def headers(api):
    creds = {"email": "chunks@example.com", "password": "correct horse battery"}
    requests.post(f"{api.url}/api/v1/auth/register", json=creds, timeout=10).raise_for_status()
    login = requests.post(f"{api.url}/api/v1/auth/login", json=creds, timeout=10)
    return {"Authorization": f"Bearer {login.json()['access_token']}",
            "Content-Type": "application/json"}


def _padded(size):
    """A valid JSON object of exactly ``size`` bytes (trailing spaces are insignificant)."""
    doc = b'{"title": "padded"}'
    return doc + b" " * (size - len(doc))


def _chunked(data, piece=64 * 1024):
    # A generator makes requests send Transfer-Encoding: chunked with no Content-Length.
    for start in range(0, len(data), piece):
        yield data[start:start + piece]


@pytest.mark.parametrize("size, status", [(LIMIT, 201), (LIMIT + 1, 413), (3 * LIMIT, 413)])
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_body_limit_is_the_same_chunked_or_not(api, headers, framing, size, status):
    """Cut at the limit, a padded body is still valid JSON: only the size may decide."""
    data = _padded(size)
    body = _chunked(data) if framing == "chunked" else data
    try:
        r = requests.post(f"{api.url}/api/v1/content", data=body, headers=headers, timeout=30)
    except requests.ConnectionError:
        # gunicorn may close before reading a refused body; the answer must still be a 413
        pytest.fail(f"connection dropped on a {size}-byte {framing} body")
    assert r.status_code == status, r.text[:300]
    if status == 413:
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json()["detail"] == f"The request body is larger than {LIMIT} bytes."


def test_chunked_body_over_the_limit_with_invalid_json_is_413_not_400(api, headers):
    data = b'{"title": "x", "body": "' + b"y" * LIMIT + b'"}'
    r = requests.post(f"{api.url}/api/v1/content", data=_chunked(data), headers=headers,
                      timeout=30)
    assert r.status_code == 413, r.text[:300]
