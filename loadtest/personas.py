"""Simulated API clients: readers, writers and sessions, each with its own account.

Requests are named by the API's route templates (``name=``) so Locust's rows line up with the
``route`` label of ``flask_http_request_duration_seconds_count``; every response is checked
against the status the contract promises, so a wrong answer is a failure even when it is fast.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
import uuid

from locust import FastHttpUser, task
from locust.exception import StopUser

from .params import think_time
from .safety import UnsafeHost, check_host

API = "/api/v1"
CONTENT = f"{API}/content"
ITEM = f"{API}/content/<id>"  # the name every /content/{uuid} request is grouped under
log = logging.getLogger(__name__)


def _think(user) -> float:
    options = user.environment.parsed_options
    low, high = think_time(getattr(options, "think_time", None) or "0.5:2")
    return random.uniform(low, high)


class ApiUser(FastHttpUser):
    """An API client with its own account: registers and logs in when it starts."""

    abstract = True
    wait_time = _think

    def on_start(self) -> None:
        options = self.environment.parsed_options
        try:
            check_host(self.host, getattr(options, "allowed_hosts", "") or "")
        except UnsafeHost as exc:
            # Belt and braces for hosts typed into the web UI: no request leaves for them.
            log.error("%s", exc)
            self.environment.process_exit_code = 2
            raise StopUser() from None
        self.email = f"load-{uuid.uuid4().hex}@example.com"
        self.password = secrets.token_urlsafe(18)
        self.access = self.refresh = None
        self.expires_at = 0.0
        self.expect(
            "POST",
            f"{API}/auth/register",
            (201,),
            json={"email": self.email, "password": self.password},
        )
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
        """Send a request and count it as failed unless the status is one of ``statuses``."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with self.client.request(
            method, path, name=name or path, headers=headers, catch_response=True, **kwargs
        ) as response:
            if response.status_code in statuses:
                response.success()
            else:
                detail = (response.text or "")[:200]
                response.failure(
                    f"{method} {name or path}: expected {statuses}, "
                    f"got {response.status_code} {detail}"
                )
        return response

    def login(self) -> bool:
        response = self.expect(
            "POST",
            f"{API}/auth/login",
            (200,),
            json={"email": self.email, "password": self.password},
        )
        return self._take_tokens(response)

    def _take_tokens(self, response) -> bool:
        if response.status_code != 200:
            self.access = self.refresh = None
            return False
        body = response.json()
        self.access, self.refresh = body["access_token"], body["refresh_token"]
        self.expires_at = time.monotonic() + float(body.get("expires_in", 1800))
        return True

    def token(self) -> str | None:
        """A live access token: refreshed before expiry (a soak outlives one), re-login if lost."""
        if self.access and time.monotonic() > self.expires_at - 60 and self.refresh:
            self._take_tokens(
                self.expect("POST", f"{API}/auth/refresh", (200,), token=self.refresh)
            )
        if not self.access:
            self.login()
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
