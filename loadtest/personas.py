"""Simulated API clients: readers, writers and sessions, each with its own account.

Requests are named by the API's route templates (``name=``) so Locust's rows line up with the
``route`` label of ``flask_http_request_duration_seconds_count``; every response is checked
against the status the contract promises, so a wrong answer is a failure even when it is fast.

Two rules keep the numbers honest under pressure. A 429 or 503 with ``Retry-After`` is
back-pressure: the user waits as told and retries, within a budget, and the answer is counted
apart (``loadtest.backpressure``), not as a failure. And a request that needs a token is never
sent without one: a user without a live token logs in first, and when that fails the task ends
there, so one refused login cannot turn into a cascade of 401s and an account lockout.
"""

from __future__ import annotations

import logging
import random
import time
import uuid

import gevent
from locust import FastHttpUser, task
from locust.exception import CatchResponseError, RescheduleTask, StopUser

from . import accounts
from .backpressure import TALLY, answer_summary, retry_after_seconds
from .params import backoff_policy, think_time
from .safety import UnsafeHost, check_host

API = "/api/v1"
CONTENT = f"{API}/content"
ITEM = f"{API}/content/<id>"  # the name every /content/{uuid} request is grouped under
log = logging.getLogger(__name__)


def _think(user) -> float:
    options = user.environment.parsed_options
    low, high = think_time(getattr(options, "think_time", None) or "0.5:2")
    return random.uniform(low, high)


class _BackedOff(Exception):
    """Raised inside Locust's response block so that the answer is not recorded as a request
    (Locust's documented way to leave a response out of its statistics)."""

    def __init__(self, status: int, wait: float):
        super().__init__(status, wait)
        self.status, self.wait = status, wait


class _RecordedOurselves(Exception):
    """Leaves the final answer of a request that waited out back-pressure to ``expect``, which
    records it with the whole time the user waited."""


class ApiUser(FastHttpUser):
    """An API client with an account (prepared, or registered when it starts) that logs in
    before anything else."""

    abstract = True
    wait_time = _think
    reported_no_account = False

    def on_start(self) -> None:
        options = self.environment.parsed_options
        try:
            check_host(self.host, getattr(options, "allowed_hosts", "") or "")
        except UnsafeHost as exc:
            # Belt and braces for hosts typed into the web UI: no request leaves for them.
            log.error("%s", exc)
            self.environment.process_exit_code = 2
            raise StopUser() from None
        self.backoff = backoff_policy(options)
        self.access = self.refresh = None
        self.expires_at = 0.0
        self.login_after = 0.0  # a lockout's Retry-After: no login attempt before this
        self.register_tried = False
        self.registers = getattr(options, "accounts", "prepared") == "register"
        account = None if self.registers else accounts.POOL.take()
        if account is None and not self.registers:
            # No request at all: the run is being stopped (see the preparation's errors).
            if not ApiUser.reported_no_account:
                log.error("no prepared account for the users: they send nothing")
                ApiUser.reported_no_account = True
        self.registered = account is not None
        account = account or accounts.new_account()
        self.email, self.password = account.email, account.password
        if self.has_account():
            self.login()

    # -- plumbing -------------------------------------------------------------------------
    def expect(
        self,
        method: str,
        path: str,
        statuses: tuple[int, ...],
        name: str | None = None,
        token: str | None = None,
        headers: dict | None = None,
        **kwargs,
    ):
        """Send a request and count it as failed unless the status is one of ``statuses``.

        Back-pressure (429/503 with Retry-After) within the budget is waited out and retried;
        it is tallied apart, and the answer finally served is recorded with the whole time it
        took, waits included: what the user waited for it.
        """
        name = name or path
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started, waited = time.perf_counter(), 0.0
        for attempt in range(self.backoff.retries + 1):
            try:
                with self.client.request(
                    method, path, name=name, headers=headers, catch_response=True, **kwargs
                ) as response:
                    retry_after = response.headers.get("Retry-After")
                    status = response.status_code
                    wait = self.backoff.wait_for(status, retry_after, attempt, waited)
                    if wait is not None:
                        raise _BackedOff(status, wait)
                    failure = None
                    if status not in statuses:
                        failure = self._describe(method, name, statuses, response)
                        if self.backoff.gave_up(status, retry_after):
                            TALLY.give_up(method, name, status)
                    if attempt:
                        raise _RecordedOurselves()
                    if failure:
                        response.failure(failure)
                    else:
                        response.success()
                return response
            except _BackedOff as backed_off:
                TALLY.add(method, name, backed_off.status, backed_off.wait)
                gevent.sleep(backed_off.wait)
                waited += backed_off.wait
            except _RecordedOurselves:
                # Locust's documented way to report a request itself (as custom clients do).
                self.environment.events.request.fire(
                    request_type=method,
                    name=name,
                    response_time=(time.perf_counter() - started) * 1000,
                    response_length=len(response.content or b""),
                    response=response,
                    context={},
                    exception=CatchResponseError(failure) if failure else None,
                )
                return response
        raise AssertionError("unreachable: the last attempt is never backed off")

    def _describe(self, method, name, statuses, response) -> str:
        text = f"{method} {name}: expected {statuses}, got {response.status_code}"
        retry_after = response.headers.get("Retry-After")
        if self.backoff.gave_up(response.status_code, retry_after):
            text += (
                f" with Retry-After {retry_after} beyond the back-off budget "
                f"({self.backoff.retries} retries, {self.backoff.max_wait:g} s of waiting)"
            )
        return f"{text}: {answer_summary(response.text)}"

    def has_account(self) -> bool:
        """Register (``--accounts register``) until the account exists; False while it does
        not, so no login is tried for an account that was never made."""
        if not self.registered and self.registers:
            response = self.expect(
                "POST",
                f"{API}/auth/register",
                # a 409 on a second try: the first one was made, its answer lost
                (201, 409) if self.register_tried else (201,),
                json={"email": self.email, "password": self.password},
            )
            self.register_tried = True
            self.registered = response.status_code in (201, 409)
        return self.registered

    def login(self) -> bool:
        if time.monotonic() < self.login_after or not self.has_account():
            return False
        response = self.expect(
            "POST",
            f"{API}/auth/login",
            (200,),
            json={"email": self.email, "password": self.password},
        )
        if response.status_code == 429:  # a lockout beyond the budget: try after it lifts
            wait = retry_after_seconds(response.headers.get("Retry-After")) or 0.0
            self.login_after = time.monotonic() + wait
        return self._take_tokens(response)

    def _take_tokens(self, response) -> bool:
        if response.status_code != 200:
            self.access = self.refresh = None
            return False
        body = response.json()
        self.access, self.refresh = body["access_token"], body["refresh_token"]
        self.expires_at = time.monotonic() + float(body.get("expires_in", 1800))
        return True

    def token(self) -> str:
        """A live access token: refreshed before expiry (a soak outlives one), logged in again
        if lost. Without one the task ends here (RescheduleTask): nothing that needs a token
        is sent without it."""
        if self.access and time.monotonic() > self.expires_at - 60 and self.refresh:
            self._take_tokens(
                self.expect("POST", f"{API}/auth/refresh", (200,), token=self.refresh)
            )
        if not self.access:
            self.login()
        if not self.access:
            raise RescheduleTask()
        return self.access


class Reader(ApiUser):
    """Lists content, pages through it with cursors, and re-reads items with If-None-Match."""

    weight = 3

    def on_start(self) -> None:
        super().on_start()
        self.etags: dict[str, str] = {}

    def _remember(self, items: list[dict]) -> None:
        for item in items:
            self.etags.setdefault(item["id"], "")
        if len(self.etags) > 200:  # keep memory flat over a soak
            for key in list(self.etags)[:100]:
                del self.etags[key]

    @task(3)
    def list_first_page(self) -> None:
        response = self.expect(
            "GET", f"{CONTENT}?limit=20", (200,), name=CONTENT, token=self.token()
        )
        if response.status_code == 200:
            self._remember(response.json()["items"])

    @task(2)
    def page_through(self) -> None:
        cursor, pages = None, 0
        while pages < 5:
            query = f"limit=10&cursor={cursor}" if cursor else "limit=10"
            response = self.expect(
                "GET", f"{CONTENT}?{query}", (200,), name=CONTENT, token=self.token()
            )
            if response.status_code != 200:
                return
            body = response.json()
            self._remember(body["items"])
            cursor, pages = body.get("next_cursor"), pages + 1
            if not cursor:
                return

    @task(1)
    def search(self) -> None:
        self.expect(
            "GET", f"{CONTENT}?q=load&published=true", (200,), name=CONTENT, token=self.token()
        )

    @task(4)
    def read_item(self) -> None:
        if not self.etags:
            return self.list_first_page()
        item_id = random.choice(list(self.etags))
        headers = {"If-None-Match": self.etags[item_id]} if self.etags[item_id] else {}
        # 404: a writer deleted it since we listed it, which readers must tolerate.
        response = self.expect(
            "GET",
            f"{CONTENT}/{item_id}",
            (200, 304, 404),
            name=ITEM,
            token=self.token(),
            headers=headers,
        )
        if response.status_code == 200:
            self.etags[item_id] = response.headers.get("ETag", "")
        elif response.status_code == 404:
            self.etags.pop(item_id, None)


class Writer(ApiUser):
    """Creates items, updates them with If-Match, and deletes its own."""

    weight = 2
    keep = 20  # items each writer keeps alive at most

    def on_start(self) -> None:
        super().on_start()
        self.mine: dict[str, str] = {}  # id -> ETag

    @task(3)
    def create(self) -> None:
        body = {
            "title": f"load item {uuid.uuid4().hex[:8]}",
            "body": "lorem ipsum " * random.randint(1, 50),
            "is_published": random.random() < 0.7,
        }
        response = self.expect("POST", CONTENT, (201,), token=self.token(), json=body)
        if response.status_code == 201:
            self.mine[response.json()["id"]] = response.headers.get("ETag", "")
        if len(self.mine) > self.keep:
            self.delete_own()

    @task(3)
    def update(self) -> None:
        if not self.mine:
            return self.create()
        item_id = random.choice(list(self.mine))
        response = self.expect(
            "PATCH",
            f"{CONTENT}/{item_id}",
            (200,),
            name=ITEM,
            token=self.token(),
            headers={"If-Match": self.mine[item_id]},
            json={"title": f"edited {uuid.uuid4().hex[:8]}"},
        )
        if response.status_code == 200:
            self.mine[item_id] = response.headers.get("ETag", "")

    @task(1)
    def delete_own(self) -> None:
        if not self.mine:
            return
        item_id = next(iter(self.mine))
        self.expect("DELETE", f"{CONTENT}/{item_id}", (204,), name=ITEM, token=self.token())
        del self.mine[item_id]

    @task(1)
    def list_mine(self) -> None:
        self.expect("GET", f"{CONTENT}?owner=me&limit=20", (200,), name=CONTENT, token=self.token())


class Session(ApiUser):
    """Logs in, looks at itself, rotates its refresh token, and logs out: the auth lifecycle."""

    weight = 1

    @task
    def lifecycle(self) -> None:
        if not self.login():
            return
        self.expect("GET", f"{API}/users/me", (200,), token=self.access)
        self._take_tokens(self.expect("POST", f"{API}/auth/refresh", (200,), token=self.refresh))
        if self.access:
            self.expect("POST", f"{API}/auth/logout", (204,), token=self.access)
            self.access = self.refresh = None
