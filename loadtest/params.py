"""Scenario parameters: one definition shared by Locust's command line, the environment and shapes.

Every parameter is a ``--flag`` on the ``locust`` command line and a ``VIGIL_LOAD_*`` variable;
unset ones fall back to the defaults of the scenario's shape, so changing a target, a duration
or a user count never needs a code edit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields

_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$"
)


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h30m`` (what people type for a run time)."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text.strip().lower())
        if not text.strip() or not match or not any(match.groupdict().values()):
            raise ValueError(f"not a duration: {text!r} (examples: 90, 90s, 5m, 1h30m)")
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        seconds = parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {text!r}")
    return seconds


@dataclass(frozen=True)
class ShapeParams:
    """What a shape needs; ``None`` means "use the scenario's default"."""

    users: int | None = None  # the load target: users at the plateau (spike: the baseline)
    duration: float | None = None  # plateau / hold time in seconds
    ramp: float | None = None  # ramp-up (and ramp-down) time in seconds
    step_users: int | None = None  # stress: users added per step
    step_duration: float | None = None  # stress: seconds per step
    max_steps: int | None = None  # stress: the run stops after this many steps at most
    multiplier: float | None = None  # spike: peak users = users * multiplier
    spike_duration: float | None = None  # spike: seconds at the peak
    recovery: float | None = None  # spike: seconds observed after the drop back

    def merged(self, defaults: dict) -> ShapeParams:
        """Fill unset fields from a shape's defaults."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return ShapeParams(
            **{k: (v if v is not None else defaults.get(k)) for k, v in values.items()}
        )


# (flag, env var, field, converter, help)
_SHAPE_FLAGS = [
    ("--load-users", "users", int, "target users (spike: baseline users)"),
    ("--load-duration", "duration", parse_duration, "hold time at the target, e.g. 90s, 5m, 1h"),
    ("--load-ramp", "ramp", parse_duration, "ramp-up time (ramp-down uses the same)"),
    ("--stress-step-users", "step_users", int, "stress: users added per step"),
    ("--stress-step-duration", "step_duration", parse_duration, "stress: time per step"),
    ("--stress-max-steps", "max_steps", int, "stress: stop after this many steps at most"),
    ("--spike-multiplier", "multiplier", float, "spike: peak = target users x this"),
    ("--spike-duration", "spike_duration", parse_duration, "spike: time at the peak"),
    ("--spike-recovery", "recovery", parse_duration, "spike: time observed after the drop"),
]

SCENARIOS = ("smoke", "load", "stress", "spike", "soak")


def env_name(flag: str) -> str:
    """``--load-users`` -> VIGIL_LOAD_USERS; ``--spike-duration`` -> VIGIL_LOAD_SPIKE_DURATION."""
    name = flag.lstrip("-").upper().replace("-", "_")
    return "VIGIL_" + name if name.startswith("LOAD_") else "VIGIL_LOAD_" + name


def add_arguments(parser) -> None:
    """Register Vigil's options on Locust's (configargparse) parser."""
    group = parser.add_argument_group(
        "Vigil scenario", "every flag is also a VIGIL_LOAD_* variable"
    )
    group.add_argument(
        "--scenario",
        choices=SCENARIOS,
        env_var="VIGIL_LOAD_SCENARIO",
        default="smoke",
        help="which shape and threshold set to run",
    )
    for flag, _field, _conv, text in _SHAPE_FLAGS:
        group.add_argument(flag, env_var=env_name(flag), default=None, help=text)
    group.add_argument(
        "--thresholds",
        env_var="VIGIL_LOAD_THRESHOLDS",
        default=None,
        help="threshold file (default: loadtest/thresholds.yml)",
    )
    group.add_argument(
        "--report-dir",
        env_var="VIGIL_LOAD_REPORT_DIR",
        default=None,
        help="where thresholds.json goes (default: reports/<scenario>)",
    )
    group.add_argument(
        "--time-margin",
        env_var="VIGIL_LOAD_TIME_MARGIN",
        default=None,
        help="hard stop this long after the planned end (default: 10%%, at least 30 s)",
    )
    group.add_argument(
        "--think-time",
        env_var="VIGIL_LOAD_THINK_TIME",
        default="0.5:2",
        help="seconds each simulated user waits between tasks, MIN:MAX",
    )
    group.add_argument(
        "--accounts",
        choices=("prepared", "register"),
        env_var="VIGIL_LOAD_ACCOUNTS",
        default="prepared",
        help="prepared: register one account per peak user at --accounts-rate before the "
        "measured phase (default); register: every user registers when it starts",
    )
    group.add_argument(
        "--accounts-rate",
        env_var="VIGIL_LOAD_ACCOUNTS_RATE",
        default="2",
        help="accounts registered per second while preparing (default 2, under nginx's "
        "per-address auth rate)",
    )
    group.add_argument(
        "--accounts-file",
        env_var="VIGIL_LOAD_ACCOUNTS_FILE",
        default=None,
        help="use the accounts in this file (email,password per line) instead of preparing",
    )
    group.add_argument(
        "--backoff-retries",
        env_var="VIGIL_LOAD_BACKOFF_RETRIES",
        default="10",
        help="times a request answered 429/503 with Retry-After is retried (default 10)",
    )
    group.add_argument(
        "--backoff-max-wait",
        env_var="VIGIL_LOAD_BACKOFF_MAX_WAIT",
        default="10s",
        help="seconds one request may spend waiting out back-pressure in all; an answer "
        "beyond that counts as a failure (default 10s)",
    )
    group.add_argument(
        "--allowed-hosts",
        env_var="VIGIL_LOAD_ALLOWED_HOSTS",
        default="",
        help="comma-separated non-loopback hosts (names, IPs, CIDRs) that may be loaded",
    )
    group.add_argument(
        "--prometheus-port",
        type=int,
        env_var="VIGIL_LOAD_PROMETHEUS_PORT",
        default=0,
        help="serve scenario metrics for Prometheus on this port (0: off)",
    )
    group.add_argument(
        "--prometheus-bind",
        env_var="VIGIL_LOAD_PROMETHEUS_BIND",
        default="127.0.0.1",
        help="address the metrics endpoint binds",
    )


def shape_params(options) -> ShapeParams:
    """Build ShapeParams from parsed options (or, with none, from the environment)."""
    values = {}
    for flag, field, conv, _text in _SHAPE_FLAGS:
        raw = getattr(options, flag.lstrip("-").replace("-", "_"), None) if options else None
        if raw is None:
            raw = os.environ.get(env_name(flag))
        if raw in (None, ""):
            continue
        try:
            values[field] = conv(raw)
        except ValueError as exc:
            raise ValueError(f"{flag} / {env_name(flag)}: {exc}") from None
        if values[field] is not None and values[field] < 0:
            raise ValueError(f"{flag} / {env_name(flag)} cannot be negative: {raw!r}")
    return ShapeParams(**values)


def think_time(text: str) -> tuple[float, float]:
    """``"0.5:2"`` -> (0.5, 2.0); ``"0"`` -> (0, 0)."""
    try:
        low, _, high = text.partition(":")
        bounds = (float(low), float(high or low))
    except ValueError:
        raise ValueError(
            f"--think-time / VIGIL_LOAD_THINK_TIME: expected MIN:MAX seconds, got {text!r}"
        ) from None
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise ValueError(
            f"--think-time / VIGIL_LOAD_THINK_TIME: need 0 <= MIN <= MAX, got {text!r}"
        )
    return bounds


def backoff_policy(options):
    """The back-pressure budget from ``--backoff-retries`` and ``--backoff-max-wait``."""
    from .backpressure import BackoffPolicy

    retries = getattr(options, "backoff_retries", None) or "10"
    max_wait = getattr(options, "backoff_max_wait", None) or "10s"
    try:
        count = int(retries)
    except ValueError:
        raise ValueError(
            f"--backoff-retries / VIGIL_LOAD_BACKOFF_RETRIES: not a whole number: {retries!r}"
        ) from None
    if count < 0:
        raise ValueError(
            f"--backoff-retries / VIGIL_LOAD_BACKOFF_RETRIES cannot be negative: {count}"
        )
    try:
        seconds = parse_duration(max_wait)
    except ValueError as exc:
        raise ValueError(f"--backoff-max-wait / VIGIL_LOAD_BACKOFF_MAX_WAIT: {exc}") from None
    return BackoffPolicy(count, seconds)


def accounts_rate(options) -> float:
    """Accounts registered per second while preparing (``--accounts-rate``)."""
    text = getattr(options, "accounts_rate", None) or "2"
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not 0 < rate < float("inf"):
        raise ValueError(
            f"--accounts-rate / VIGIL_LOAD_ACCOUNTS_RATE: expected accounts per second > 0, "
            f"got {text!r}"
        )
    return rate
