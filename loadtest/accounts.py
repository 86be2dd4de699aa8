"""Accounts for the simulated users, prepared before the measured phase.

By default (``--accounts prepared``) the master registers one account per user of the shape's
peak, at a controlled rate (``--accounts-rate``, 2 per second: under nginx's per-address auth
rate), before the shape's clock starts; users then only log in. Otherwise every user would
register when it starts, and a spike or a stress step would measure a burst of argon2id
registrations (and the auth rate limit) instead of the traffic the scenario describes.
``--accounts register`` keeps that behaviour on purpose; ``--accounts-file`` takes accounts
made some other way.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import requests
from gevent.pool import Pool
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning

from .backpressure import BackoffPolicy, answer_summary

log = logging.getLogger(__name__)
REGISTER = "/api/v1/auth/register"
#: Back-pressure one registration waits out while preparing, at the least: answers and seconds.
PREPARATION_RETRIES = 30
PREPARATION_WAIT = 60.0


@dataclass(frozen=True)
class Account:
    email: str
    password: str


class AccountPool:
    """The accounts this process's users take, in turn (shared round-robin when users
    outnumber them)."""

    def __init__(self) -> None:
        self.accounts: list[Account] = []
        self._next = itertools.count()

    def fill(self, accounts) -> None:
        self.accounts = [a if isinstance(a, Account) else Account(*a) for a in accounts]
        self._next = itertools.count()

    def take(self) -> Account | None:
        if not self.accounts:
            return None
        return self.accounts[next(self._next) % len(self.accounts)]

    def __len__(self) -> int:
        return len(self.accounts)


#: This process's accounts (filled by the preparation, or by a message from the master).
POOL = AccountPool()


def new_account() -> Account:
    return Account(f"load-{uuid.uuid4().hex}@example.com", secrets.token_urlsafe(18))


def read_file(path: str | Path) -> list[Account]:
    """``email,password`` per line (``#`` comments and blank lines ignored)."""
    accounts = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(
            f"--accounts-file / VIGIL_LOAD_ACCOUNTS_FILE: {path}: {exc.strerror}"
        ) from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        email, sep, password = line.strip().partition(",")
        if not sep or not email or not password:
            raise ValueError(f"{path}:{number}: expected email,password")
        accounts.append(Account(email, password))
    if not accounts:
        raise ValueError(f"{path}: no accounts in the file")
    return accounts


@dataclass
class Preparation:
    """What preparing the accounts took, for the report."""

    mode: str
    requested: int = 0
    created: int = 0
    failed: int = 0
    backpressure: int = 0
    seconds: float = 0.0
    rate: float | None = None
    source: str = ""
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.mode == "register":
            return "accounts: each user registers its own when it starts (--accounts register)"
        if self.source:
            return f"accounts: {self.created} read from {self.source}"
        return (
            f"accounts: {self.created} of {self.requested} registered before the measured "
            f"phase at {self.rate:g}/s in {self.seconds:.1f} s"
            + (f", {self.failed} failed" if self.failed else "")
            + (
                f", {self.backpressure} back-pressure answers waited out"
                if self.backpressure
                else ""
            )
        )


def prepare(host: str, count: int, rate: float, policy: BackoffPolicy, timeout: float = 30.0):
    """Register ``count`` new accounts on ``host`` at ``rate`` per second; the accounts created
    and a Preparation. Back-pressure is honoured as the personas honour it, with more patience
    (PREPARATION_RETRIES, PREPARATION_WAIT): nothing is measured yet, and a node that hashes one
    password at a time answers the rest 503 until its turn."""
    policy = BackoffPolicy(
        max(policy.retries, PREPARATION_RETRIES), max(policy.max_wait, PREPARATION_WAIT)
    )
    done = Preparation("prepared", requested=count, rate=rate)
    accounts: list[Account] = []
    # Paced starts, and no more in flight than the rate: a server slower than the pace (one
    # that hashes a password at a time, and answers the rest 503) slows the preparation down
    # instead of growing a crowd of retries that compete for its one slot.
    pool = Pool(max(1, math.ceil(rate)))
    session = requests.Session()
    for scheme in ("http://", "https://"):  # one kept-alive connection per waiting request
        session.mount(scheme, HTTPAdapter(pool_maxsize=pool.size))
    # Not verified, as the personas (FastHttpUser's default) do not verify: the target is a
    # test appliance with a self-signed certificate, named on purpose in ALLOWED_HOSTS. Said
    # once for the process: catch_warnings is not safe across greenlets.
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)

    def register_one() -> None:
        account, waited = new_account(), 0.0
        for attempt in itertools.count():
            try:
                response = session.post(
                    host.rstrip("/") + REGISTER,
                    json={"email": account.email, "password": account.password},
                    timeout=timeout,
                    verify=False,  # per request: REQUESTS_CA_BUNDLE overrides a session's
                )
            except requests.RequestException as exc:
                done.failed += 1
                done.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            if response.status_code == 201 or (response.status_code == 409 and attempt):
                accounts.append(account)
                return
            wait = policy.wait_for(
                response.status_code, response.headers.get("Retry-After"), attempt, waited
            )
            if wait is None:
                done.failed += 1
                done.errors.append(f"{response.status_code} {answer_summary(response.text)}")
                return
            done.backpressure += 1
            gevent.sleep(wait)
            waited += wait

    started = time.monotonic()
    for n in range(count):
        gevent.sleep(max(0.0, started + n / rate - time.monotonic()))
        pool.spawn(register_one)
    pool.join()
    session.close()
    done.seconds = time.monotonic() - started
    done.created = len(accounts)
    return accounts, done
