"""Back-pressure: answers that ask the client to slow down (429 or 503 with ``Retry-After``).

A well-behaved client waits as told and tries again, so the personas do that, within a budget:
at most ``--backoff-retries`` retries and ``--backoff-max-wait`` seconds of waiting in all for
one request (a user's patience). Such answers are not failures and do not enter Locust's
request statistics; they are tallied here, by route and status, and reported beside the
failures. The answer finally served is recorded with the whole time it took, waits included.
An answer beyond the budget (one retry too many, or a ``Retry-After`` longer than the patience
left) is judged like any other answer: a failure.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass

BACKPRESSURE_STATUSES = (429, 503)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def answer_summary(text: str | None) -> str:
    """What an error answer says, without what makes it unique (its request_id): Locust groups
    failures by message, so one cause should read the same every time."""
    try:
        body = json.loads(text or "")
    except ValueError:
        return (text or "")[:200]
    if not isinstance(body, dict):
        return (text or "")[:200]
    return ": ".join(str(body[k]) for k in ("title", "detail") if body.get(k))[:200]


@dataclass(frozen=True)
class BackoffPolicy:
    """How often and how long in all a persona waits when the service pushes back."""

    retries: int = 10
    max_wait: float = 10.0  # seconds of waiting in all, for one request

    def wait_for(
        self, status: int, retry_after: str | None, attempt: int, waited: float = 0.0
    ) -> float | None:
        """Seconds to wait before retrying attempt ``attempt`` (0-based) of a request that has
        waited ``waited`` seconds so far, or None: not back-pressure, or beyond the budget
        (then the answer counts as it is)."""
        if status not in BACKPRESSURE_STATUSES or attempt >= self.retries:
            return None
        seconds = retry_after_seconds(retry_after)
        left = self.max_wait - waited
        if seconds is None or seconds > left:
            return None
        # Up to half as long again, so users refused together do not all return together.
        return min(left, seconds * random.uniform(1.0, 1.5))

    def gave_up(self, status: int, retry_after: str | None) -> bool:
        """The answer was back-pressure, but the budget did not allow honouring it."""
        return status in BACKPRESSURE_STATUSES and retry_after_seconds(retry_after) is not None


class Tally:
    """Back-pressure answers by (method, route name, status) in this process.

    On a Locust worker it is drained into each report to the master, which merges it, the way
    Locust ships its own statistics.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._rows: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0, 0.0, 0])
        self.answers = 0

    def add(self, method: str, name: str, status: int, waited: float) -> None:
        """One back-pressure answer, honoured by waiting ``waited`` seconds."""
        row = self._rows[(method, name, status)]
        row[0] += 1
        row[1] += waited
        self.answers += 1

    def give_up(self, method: str, name: str, status: int) -> None:
        """One back-pressure answer not honoured (counted as a failure in Locust's stats)."""
        self._rows[(method, name, status)][2] += 1

    def for_route(self, method: str, name: str) -> int:
        return sum(row[0] for (m, n, _s), row in self._rows.items() if (m, n) == (method, name))

    def rows(self) -> list[dict]:
        return [
            {
                "method": method,
                "name": name,
                "status": status,
                "answers": int(answers),
                "waited_s": round(waited, 1),
                "gave_up": int(gave_up),
            }
            for (method, name, status), (answers, waited, gave_up) in sorted(self._rows.items())
        ]

    def drain(self) -> list[list]:
        """Everything counted since the last drain, as plain lists (a worker's report)."""
        data = [[*key, *row] for key, row in self._rows.items()]
        self.clear()
        return data

    def merge(self, data: list[list] | None) -> None:
        """Add a worker's drained tally."""
        for method, name, status, answers, waited, gave_up in data or []:
            row = self._rows[(method, name, int(status))]
            row[0] += answers
            row[1] += waited
            row[2] += gave_up
            self.answers += answers


#: This process's tally (each Locust process runs one environment).
TALLY = Tally()
