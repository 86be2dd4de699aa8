"""Fault switches for fire drills: make API requests fail or slow, or fail readiness, on purpose.

Operators flip them with ``flask --app api faults ...``; the state lives in the database
(table fault_switches, migration 0050), so every worker of every node obeys it. Each worker
re-reads the table at most every ``POLL_SECONDS`` (no database hit per request), and a
switch turns itself off when its time is up. No HTTP route reads or writes the switches.
"""
import json
import logging
import random
import re
import time
from datetime import UTC, datetime, timedelta

import click
from flask import current_app, request
from flask.cli import AppGroup
from peewee import DatabaseError, InterfaceError

from api import events
from api.config import NOT_API_TRAFFIC
from api.db import database
from api.errors import problem
from api.models import FaultSwitch, utcnow

log = logging.getLogger(__name__)

#: How stale a worker's view of the switches may be; with request traffic every worker
#: obeys a change within this many seconds.
POLL_SECONDS = 2.0
MAX_DURATION = timedelta(hours=24)
MAX_LATENCY_MS = 25_000  # below gunicorn's worker timeout, so a drill never kills workers
FAULT_KINDS = ("error", "latency", "readiness")
INJECTED_FAULT_TYPE = "https://vigil.invalid/problems/injected-fault"
READINESS_ENDPOINT = "health.ready"
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_NOT_API_TRAFFIC = re.compile(NOT_API_TRAFFIC)


class _Switches:
    """A worker's cached copy of the active switches: kind -> (ratio, latency_ms, expires)."""

    def __init__(self):
        self.active = {}
        self.due = float("-inf")  # monotonic time from which a request re-reads the table
        self.failing = False

    def refresh(self):
        self.due = time.monotonic() + POLL_SECONDS
        try:
            rows = list(FaultSwitch.select().where(FaultSwitch.expires_at > utcnow()).tuples())
        except (DatabaseError, InterfaceError) as e:
            # Keep the last known switches (each still expires on time) and retry later.
            if not self.failing:
                log.warning("fault switches not readable: %s", type(e).__name__)
            self.failing = True
            return
        self.failing = False
        self.active = {
            kind: (ratio, latency_ms, expires_at.replace(tzinfo=UTC).timestamp())
            for kind, ratio, latency_ms, expires_at, _set_at in rows
        }

    def current(self):
        if time.monotonic() >= self.due:
            self.refresh()
        if self.active:
            now = time.time()
            return {k: v for k, v in self.active.items() if v[2] > now}
        return self.active


def active_switches(app):
    """Kind -> (ratio, latency_ms, expires epoch) of the switches on now (cached per app)."""
    return app.extensions["vigil_faults"].current()


def _injected(kind, **fields):
    events.fault_injected.send(current_app._get_current_object(), kind=kind)
    log.warning("fault injected", extra={"fault": kind, **fields})


def _inject(switches):
    """Apply the switches to this request; a problem response when the error switch hits."""
    active = switches.current()
    if request.endpoint == READINESS_ENDPOINT:
        # The readiness check itself (fault_switch_readiness) fails the request; it is
        # counted here, once per /health/ready answered while the switch is on.
        if "readiness" in active:
            _injected("readiness")
        return None
    if _NOT_API_TRAFFIC.match(request.path):
        return None
    latency = active.get("latency")
    if latency and random.random() < latency[0]:
        _injected("latency", latency_ms=latency[1])
        time.sleep(latency[1] / 1000)
    error = active.get("error")
    if error and random.random() < error[0]:
        _injected("error")
        return problem(500, detail="Injected fault: the error switch is on (fire drill).",
                       type_=INJECTED_FAULT_TYPE)
    return None


def init_app(app):
    """Register the fault hook, the readiness check and the ``flask faults`` commands."""
    app.cli.add_command(faults_cli)
    if app.config["TELEMETRY"] == "off":
        return
    switches = app.extensions["vigil_faults"] = _Switches()

    @app.before_request
    def inject_faults():
        # With no switch on and the poll not due (nearly every request) this costs one
        # comparison. A before_request hook, so an injected error is an ordinary problem
        # response and injected latency falls inside the measured request duration.
        if switches.active or time.monotonic() >= switches.due:
            return _inject(switches)
        return None

    def fault_switch_readiness():
        readiness = switches.current().get("readiness")
        if not readiness:
            return None
        until = datetime.fromtimestamp(readiness[2], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"readiness fault switch is on until {until} (fire drill)"

    app.extensions["vigil_readiness_checks"].append(fault_switch_readiness)


def parse_duration(text):
    """``90s``, ``10m``, ``1h30m`` -> timedelta (1 second to 24 hours)."""
    match = _DURATION.fullmatch(text.strip().lower()) if text else None
    if not match or not any(match.groups()):
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 10m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    duration = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if not timedelta(seconds=1) <= duration <= MAX_DURATION:
        raise click.BadParameter("the duration must be between 1s and 24h")
    return duration


def _duration_option(f):
    return click.option(
        "--for", "duration", default="10m", show_default=True,
        callback=lambda ctx, param, value: parse_duration(value),
        help="How long the switch stays on, e.g. 30s, 10m, 1h30m (max 24h).")(f)


def _ratio_option(default, help_text):
    return click.option("--ratio", type=click.FloatRange(0, 1, min_open=True), default=default,
                        show_default=True, help=help_text)


def _table_errors(action):
    """Run ``action`` and turn a missing table or dead database into a clear CLI error."""
    try:
        return action()
    except (DatabaseError, InterfaceError) as e:
        raise click.ClickException(
            f"cannot reach the fault_switches table ({type(e).__name__}: {e}); "
            "is the database up and `flask --app api db upgrade` applied?") from e


def set_switch(kind, ratio, duration, latency_ms=0):
    """Switch ``kind`` on for ``duration`` (replacing any earlier setting of that kind)."""
    now = utcnow()

    def write():
        with database.atomic():
            FaultSwitch.delete().where(
                (FaultSwitch.kind == kind) | (FaultSwitch.expires_at <= now)).execute()
            FaultSwitch.create(kind=kind, ratio=ratio, latency_ms=latency_ms,
                               expires_at=now + duration, set_at=now)

    _table_errors(write)
    expires = (now + duration).strftime("%Y-%m-%dT%H:%M:%SZ")
    log.warning("fault switch set", extra={"fault": kind, "ratio": ratio,
                                           "latency_ms": latency_ms, "expires_at": expires})
    click.echo(f"{kind} fault on (ratio {ratio:g}"
               + (f", {latency_ms} ms" if latency_ms else "")
               + f") until {expires}; every worker obeys within {POLL_SECONDS:g} s")


faults_cli = AppGroup("faults", help="Fire-drill fault switches (stored in the database).")


@faults_cli.command("error")
@_ratio_option(None, "Fraction of API requests answered with 500.")
@_duration_option
def error_command(ratio, duration):
    """Answer a fraction of API requests with 500 for a while."""
    if ratio is None:
        raise click.UsageError("--ratio is required, e.g. --ratio 0.5")
    set_switch("error", ratio, duration)


@faults_cli.command("latency")
@click.option("--ms", type=click.IntRange(1, MAX_LATENCY_MS), required=True,
              help=f"Milliseconds added to each affected request (max {MAX_LATENCY_MS}).")
@_ratio_option(1.0, "Fraction of API requests slowed down.")
@_duration_option
def latency_command(ms, ratio, duration):
    """Add latency to a fraction of API requests for a while."""
    set_switch("latency", ratio, duration, latency_ms=ms)


@faults_cli.command("readiness")
@_duration_option
def readiness_command(duration):
    """Fail /health/ready for a while (load balancers take the node out)."""
    set_switch("readiness", 1.0, duration)


@faults_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status_command(as_json):
    """Show which switches are on and until when."""
    now = utcnow()
    rows = _table_errors(lambda: list(
        FaultSwitch.select().where(FaultSwitch.expires_at > now).order_by(FaultSwitch.kind)))
    active = {
        row.kind: {"kind": row.kind, "ratio": row.ratio, "latency_ms": row.latency_ms,
                   "expires_at": row.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "remaining_seconds": int((row.expires_at - now).total_seconds())}
        for row in rows
    }
    if as_json:
        click.echo(json.dumps(list(active.values())))
        return
    for kind in FAULT_KINDS:
        row = active.get(kind)
        if row is None:
            click.echo(f"{kind:<10} off")
            continue
        extra = f", {row['latency_ms']} ms" if row["latency_ms"] else ""
        click.echo(f"{kind:<10} ON   ratio {row['ratio']:g}{extra}, until {row['expires_at']}"
                   f" ({row['remaining_seconds']} s left)")


@faults_cli.command("clear")
@click.argument("kind", required=False, type=click.Choice(FAULT_KINDS))
def clear_command(kind):
    """Switch off KIND (error, latency or readiness), or every switch."""
    query = FaultSwitch.delete()
    if kind:
        query = query.where(FaultSwitch.kind == kind)
    removed = _table_errors(query.execute)
    log.warning("fault switch cleared", extra={"fault": kind or "all"})
    click.echo(f"cleared {kind or 'all switches'} ({removed} row(s)); "
               f"every worker obeys within {POLL_SECONDS:g} s")
