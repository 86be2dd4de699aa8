"""Back-pressure rules in process: Retry-After read as RFC 9110 says, the budget's bounds, and
the tally that workers ship to the master."""

import email.utils

import pytest

from loadtest.backpressure import BackoffPolicy, Tally, answer_summary, retry_after_seconds


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("1", 1.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),
        ("1.5", None),
    ],
)
def test_retry_after_in_seconds(value, seconds):
    assert retry_after_seconds(value) == seconds


def test_retry_after_as_an_http_date():
    now = 1_800_000_000.0
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_with_retry_after_are_waited_out_a_little_longer_than_asked(status):
    policy = BackoffPolicy(retries=3, max_wait=10.0)
    waits = [policy.wait_for(status, "2", attempt=0) for _ in range(200)]
    assert all(2.0 <= w <= 3.0 for w in waits)
    assert max(waits) - min(waits) > 0.5  # spread, so refused users do not return together


@pytest.mark.parametrize(
    "status, retry_after, attempt, waited",
    [
        (500, "1", 0, 0.0),  # not back-pressure
        (401, "1", 0, 0.0),
        (429, None, 0, 0.0),  # no Retry-After: the contract promises one, so it is a failure
        (503, "later", 0, 0.0),
        (429, "11", 0, 0.0),  # longer than the patience allows
        (429, "3", 1, 7.5),  # 2.5 s of patience left
        (429, "1", 3, 3.0),  # out of retries
    ],
)
def test_what_is_not_waited_out(status, retry_after, attempt, waited):
    policy = BackoffPolicy(retries=3, max_wait=10.0)
    assert policy.wait_for(status, retry_after, attempt, waited) is None


def test_the_waits_of_one_request_stay_within_its_patience():
    policy = BackoffPolicy(retries=100, max_wait=10.0)
    waited, attempts = 0.0, 0
    while (wait := policy.wait_for(503, "1", attempts, waited)) is not None:
        waited, attempts = waited + wait, attempts + 1
    assert 9.0 <= waited <= 10.0 and 6 <= attempts <= 10  # Retry-After 1 (x1 to x1.5)
    assert BackoffPolicy(retries=0).wait_for(429, "1", 0) is None  # retries off
    assert BackoffPolicy().retries == 10 and BackoffPolicy().max_wait == 10.0  # the defaults


def test_given_up_means_back_pressure_that_was_not_honoured():
    policy = BackoffPolicy()
    assert policy.gave_up(429, "900") and policy.gave_up(503, "5")
    assert not policy.gave_up(429, None) and not policy.gave_up(500, "5")


def test_tally_by_route_and_status_and_its_trip_through_a_worker_report():
    worker, master = Tally(), Tally()
    worker.add("POST", "/api/v1/auth/login", 429, 1.2)
    worker.add("POST", "/api/v1/auth/login", 429, 1.4)
    worker.add("GET", "/api/v1/content", 503, 5.0)
    worker.give_up("POST", "/api/v1/auth/login", 429)
    master.merge(worker.drain())
    assert worker.answers == 0 and worker.rows() == []  # drained: the next report is a delta
    worker.add("POST", "/api/v1/auth/login", 429, 1.0)
    master.merge(worker.drain())
    master.merge(None)  # a report from a worker that saw none
    assert master.answers == 4
    assert master.for_route("POST", "/api/v1/auth/login") == 3
    assert master.for_route("GET", "/api/v1/content/<id>") == 0
    assert master.rows() == [
        {
            "method": "GET",
            "name": "/api/v1/content",
            "status": 503,
            "answers": 1,
            "waited_s": 5.0,
            "gave_up": 0,
        },
        {
            "method": "POST",
            "name": "/api/v1/auth/login",
            "status": 429,
            "answers": 3,
            "waited_s": 3.6,
            "gave_up": 1,
        },
    ]


@pytest.mark.parametrize(
    "text, summary",
    [
        (
            '{"type": "about:blank", "title": "Service Unavailable", "status": 503, '
            '"detail": "Too many password checks at once; retry shortly.", "request_id": "ab12"}',
            "Service Unavailable: Too many password checks at once; retry shortly.",
        ),
        ('{"title": "Not Found", "status": 404}', "Not Found"),
        ("<html>bad gateway</html>", "<html>bad gateway</html>"),
        ("[1, 2]", "[1, 2]"),
        (None, ""),
    ],
)
def test_a_failure_reads_the_same_whatever_its_request_id(text, summary):
    assert answer_summary(text) == summary
