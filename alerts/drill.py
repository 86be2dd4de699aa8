"""Fire drill: switch the error fault on, see the alert fire end to end, clear it, see it resolve.

Usage (also `make drill`):
  python alerts/drill.py --api http://127.0.0.1:8000 --prometheus http://127.0.0.1:9090
      --alertmanager http://127.0.0.1:9093 [--receiver-log FILE] [--flask "flask --app api"]

It runs ``FLASK faults error --ratio 1.0 --for 10m`` (so the switch expires by itself even if
the drill dies), sends steady traffic to GET /api/v1/content, and waits for the alert to be
firing in Prometheus, active in Alertmanager and, with --receiver-log, recorded by the local
receiver. Then it runs ``FLASK faults clear error`` and waits for the resolution. It prints how
long each hop took and exits 0 on success, 1 on a timeout. With the appliance's real rules
(5-minute window, ``for: 2m``) expect about 3 minutes to fire and 5 more to resolve.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

TRAFFIC_PATH = "/api/v1/content"


def _get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (operator URL)
        return json.loads(response.read())


def prometheus_state(prometheus, alertname):
    """'firing', 'pending' or None for ``alertname`` in Prometheus."""
    states = {a["state"] for a in _get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
              if a["labels"].get("alertname") == alertname}
    return "firing" if "firing" in states else ("pending" if states else None)


def alertmanager_active(alertmanager, alertname):
    """The active (not silenced, not inhibited) alerts named ``alertname`` in Alertmanager."""
    query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"', "active": "true",
                                    "silenced": "false", "inhibited": "false"})
    return _get_json(f"{alertmanager}/api/v2/alerts?{query}")


def receiver_record(log_path, alertname, status):
    """The first notification in the receiver's JSON lines with ``alertname`` in ``status``."""
    path = Path(log_path)
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        payload = json.loads(line)["payload"]
        for alert in payload.get("alerts", []):
            if alert["labels"].get("alertname") == alertname and alert["status"] == status:
                return {"notification": payload, "alert": alert}
    return None


class Traffic:
    """Steady GETs at the API in a background thread, bounded by stop() and a hard deadline."""

    def __init__(self, api_url, rate_per_second=20, max_seconds=1800):
        self.url = api_url.rstrip("/") + TRAFFIC_PATH
        self.interval = 1 / rate_per_second
        self.deadline = time.monotonic() + max_seconds
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            try:
                urllib.request.urlopen(self.url, timeout=5).close()  # noqa: S310
            except (urllib.error.URLError, OSError):
                pass  # 401 and 500 are expected answers; a refused connection is the alert's job
            self.sent += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def wait(what, predicate, timeout, started, say, poll=0.5):
    """Poll ``predicate`` until truthy; return seconds since ``started``; raise on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (urllib.error.URLError, OSError, ValueError):
            result = None
        if result:
            elapsed = time.monotonic() - started
            say(f"  {what}: {elapsed:.1f}s")
            return elapsed
        time.sleep(poll)
    raise TimeoutError(f"{what}: not seen within {timeout:.0f}s")


def run_drill(api, prometheus, alertmanager, set_fault, clear_fault, alertname="ApiHighErrorRatio",
              receiver_log=None, timeout=900, say=print):
    """Run the drill; return {hop: seconds}. ``set_fault``/``clear_fault`` switch the fault."""
    timings = {}
    with Traffic(api) as traffic:
        say(f"fault on: error ratio 1.0; traffic to {traffic.url}; waiting for {alertname}")
        started = time.monotonic()
        set_fault()
        try:
            timings["prometheus_firing"] = wait(
                "firing in Prometheus", lambda: prometheus_state(prometheus, alertname) == "firing",
                timeout, started, say)
            timings["alertmanager_active"] = wait(
                "active in Alertmanager", lambda: alertmanager_active(alertmanager, alertname),
                timeout, started, say)
            if receiver_log:
                timings["receiver_firing"] = wait(
                    "firing notification recorded",
                    lambda: receiver_record(receiver_log, alertname, "firing"),
                    timeout, started, say)
        finally:
            say("fault cleared; waiting for the resolution")
            cleared = time.monotonic()
            clear_fault()
        timings["prometheus_resolved"] = wait(
            "resolved in Prometheus", lambda: prometheus_state(prometheus, alertname) is None,
            timeout, cleared, say)
        if receiver_log:
            timings["receiver_resolved"] = wait(
                "resolved notification recorded",
                lambda: receiver_record(receiver_log, alertname, "resolved"),
                timeout, cleared, say)
        say(f"requests sent: {traffic.sent}")
    return timings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--alertmanager", default="http://127.0.0.1:9093")
    parser.add_argument("--receiver-log", help="the local receiver's JSON-lines file")
    parser.add_argument("--flask", default="flask --app api",
                        help="command that runs the API's Flask CLI with its environment")
    parser.add_argument("--alert", default="ApiHighErrorRatio")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per hop")
    args = parser.parse_args(argv)
    flask = shlex.split(args.flask)

    def run(*cli):
        subprocess.run([*flask, "faults", *cli], check=True, timeout=120)

    try:
        timings = run_drill(
            args.api, args.prometheus, args.alertmanager,
            set_fault=lambda: run("error", "--ratio", "1.0", "--for", "10m"),
            clear_fault=lambda: run("clear", "error"),
            alertname=args.alert, receiver_log=args.receiver_log, timeout=args.timeout)
    except TimeoutError as exc:
        print(f"drill FAILED: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"drill FAILED: fault command {exc.cmd} exited {exc.returncode}", file=sys.stderr)
        return 1
    print("drill passed: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
