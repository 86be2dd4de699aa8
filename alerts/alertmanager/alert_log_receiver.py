#!/usr/bin/env python3
"""Local Alertmanager receiver: append every notification as a JSON line; show them on a page.

Usage: alert_log_receiver.py --file /var/log/vigil-alerts/alerts.jsonl
           [--listen 127.0.0.1:9095] [--heartbeat-timeout 300] [--grafana-url URL]

Stdlib only, so the appliance runs it with the system Python. Any POST path is accepted (the
webhook posts to /alerts; tests also point Slack's and PagerDuty's URLs here to read the rendered
messages); each line is {"received_at", "path", "payload"}. GET /healthz answers 200. With port 0
the chosen port is printed on the first line of stdout ("listening on HOST:PORT").

Read-only views (nginx serves them at /alerts/, GET only):
- GET / : an HTML page of the alerts firing now and the latest notifications, with links to
  each alert's runbook and dashboard;
- GET /state.json : the same as JSON.

Dead man's switch: the Watchdog arrives every minute. When none has arrived for
--heartbeat-timeout seconds (after one was seen, or after start), the receiver itself records a
firing ticket `WatchdogHeartbeatMissing` (path /deadmansswitch), and a resolved one when the
heartbeat is back: the alerting pipeline's silence is itself on the page.
"""
import argparse
import html
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 4 * 1024 * 1024  # Alertmanager batches are small; refuse anything absurd.
# The page reads the file's tail only: the Watchdog (a line a minute) and the 4 h repeat of every
# firing alert keep what is firing inside it; logrotate keeps the file itself small.
TAIL_BYTES = 2 * 1024 * 1024
RECENT = 50
HEARTBEAT = "Watchdog"
MISSING = "WatchdogHeartbeatMissing"


def _now():
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class NotificationLog:
    """Appends JSON lines under a lock so concurrent posts never interleave."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()

    def append(self, record):
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()

    def tail(self):
        """The records in the file's last TAIL_BYTES (a partial first line is skipped)."""
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - TAIL_BYTES))
                data = handle.read()
        except FileNotFoundError:
            return []
        lines = data.decode("utf-8", "replace").splitlines()
        if size > TAIL_BYTES and lines:
            lines = lines[1:]
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records


def state(records):
    """{"firing": [...], "recent": [...], "heartbeat_at": ...} from notification records."""
    latest = {}
    heartbeat_at = None
    for record in records:
        payload = record.get("payload") or {}
        for alert in payload.get("alerts") or []:
            labels = alert.get("labels") or {}
            if labels.get("alertname") == HEARTBEAT:
                heartbeat_at = record.get("received_at")
                continue
            key = alert.get("fingerprint") or json.dumps(labels, sort_keys=True)
            latest[key] = {**alert, "received_at": record.get("received_at"),
                           "receiver": payload.get("receiver")}
    firing = sorted((a for a in latest.values() if a.get("status") == "firing"),
                    key=lambda a: ((a.get("labels") or {}).get("severity") != "page",
                                   a.get("startsAt") or ""))
    recent = []
    for record in reversed(records):
        payload = record.get("payload") or {}
        names = sorted({(a.get("labels") or {}).get("alertname", "?")
                        for a in payload.get("alerts") or []})
        if names == [HEARTBEAT]:
            continue
        recent.append({"received_at": record.get("received_at"), "path": record.get("path"),
                       "receiver": payload.get("receiver"), "status": payload.get("status"),
                       "alerts": payload.get("alerts") or [], "alertnames": names})
        if len(recent) >= RECENT:
            break
    return {"firing": firing, "recent": recent, "heartbeat_at": heartbeat_at}


def _link(href, text):
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a>' if href else ""


def _alert_row(alert, grafana_url):
    labels, notes = alert.get("labels") or {}, alert.get("annotations") or {}
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())
                      if k not in ("alertname", "severity", "service"))
    dashboard = notes.get("dashboard")
    cells = [
        html.escape(labels.get("severity", "")),
        f"<b>{html.escape(labels.get('alertname', ''))}</b><br>{html.escape(where)}",
        html.escape(notes.get("summary", "")),
        html.escape(alert.get("startsAt", "")[:19].replace("T", " ")),
        _link(notes.get("runbook_url"), "runbook"),
        _link(grafana_url.rstrip("/") + dashboard if dashboard else "", "dashboard"),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def render_page(view, grafana_url, heartbeat_timeout):
    """The read-only HTML page: firing alerts, heartbeat, recent notifications."""
    rows = "".join(_alert_row(a, grafana_url) for a in view["firing"]) or (
        '<tr><td colspan="6">Nothing is firing.</td></tr>')
    recent = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            (r["received_at"] or "")[:19].replace("T", " "), r["receiver"], r["status"],
            ", ".join(r["alertnames"]))) + "</tr>"
        for r in view["recent"]) or '<tr><td colspan="4">No notification yet.</td></tr>'
    beat = view["heartbeat_at"]
    beat_text = (f"last Watchdog heartbeat at {html.escape(beat[:19].replace('T', ' '))} UTC "
                 f"(a ticket is raised after {heartbeat_timeout:g} s without one)"
                 if beat else "no Watchdog heartbeat received yet")
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in (
        "severity", "alert", "summary", "since (UTC)", "", "")) + "</tr>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>Vigil alerts</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem;
text-align: left; vertical-align: top; }}</style></head>
<body><h1>Vigil alerts</h1>
<p>What Alertmanager sent to the local receiver (read-only; refreshed every 30 s). {beat_text}.
<a href="/runbooks/">Runbooks</a>.</p>
<h2>Firing now</h2><table>{head}{rows}</table>
<h2>Latest notifications</h2><table><tr><th>received (UTC)</th><th>receiver</th>
<th>status</th><th>alerts</th></tr>{recent}</table>
</body></html>
"""


class HeartbeatWatch:
    """Records a firing WatchdogHeartbeatMissing ticket when the Watchdog stops arriving."""

    def __init__(self, log, timeout):
        self.log = log
        self.timeout = timeout
        self.last = time.monotonic()
        self.missing_since = None
        self._lock = threading.Lock()

    def beat(self):
        with self._lock:
            self.last = time.monotonic()
            if self.missing_since is not None:
                self._record("resolved", self.missing_since)
                self.missing_since = None

    def check(self):
        with self._lock:
            silent = time.monotonic() - self.last
            if self.missing_since is None and silent > self.timeout:
                self.missing_since = _now()
                self._record("firing", self.missing_since)

    def _record(self, status, since):
        alert = {
            "status": status,
            "labels": {"alertname": MISSING, "severity": "ticket", "service": "monitoring"},
            "annotations": {
                "summary": "The alerting pipeline's heartbeat has stopped",
                "description": f"No Watchdog notification has reached the local receiver for "
                               f"over {self.timeout:g} s: Prometheus, its rules or "
                               "Alertmanager are broken, and no other alert can arrive either.",
                "runbook_url": "/runbooks/watchdog.md#watchdogheartbeatmissing",
            },
            "startsAt": since,
            "endsAt": _now() if status == "resolved" else "0001-01-01T00:00:00Z",
            "fingerprint": "deadmansswitch",
        }
        self.log.append({"received_at": _now(), "path": "/deadmansswitch", "payload": {
            "receiver": "deadmansswitch", "status": status, "alerts": [alert]}})

    def run(self, stop, interval):
        while not stop.wait(interval):
            self.check()


class Handler(BaseHTTPRequestHandler):
    log: NotificationLog  # set on the subclass built in serve()
    watch: HeartbeatWatch
    grafana_url = "http://localhost:3000"
    server_version = "vigil-alert-log/1"

    def _send(self, status, body, content_type):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, status, message):
        self._send(status, json.dumps({"status": status, "message": message}),
                   "application/json")

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._answer(200, "ok")
        elif path == "/state.json":
            self._send(200, json.dumps(state(self.log.tail())), "application/json")
        elif path in ("/", "/index.html"):
            page = render_page(state(self.log.tail()), self.grafana_url, self.watch.timeout)
            self._send(200, page, "text/html; charset=utf-8")
        else:
            self._answer(404, "GET /, /state.json or /healthz; POST notifications")

    def do_POST(self):  # noqa: N802
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(411, "Content-Length required")
            return
        if length > MAX_BODY:
            self._answer(413, f"body over {MAX_BODY} bytes")
            return
        raw = self.rfile.read(length)
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._answer(400, f"body is not JSON: {exc}")
            return
        self.log.append({"received_at": _now(), "path": self.path, "payload": payload})
        if isinstance(payload, dict) and any(
                (a.get("labels") or {}).get("alertname") == HEARTBEAT
                for a in payload.get("alerts") or [] if isinstance(a, dict)):
            self.watch.beat()
        self._answer(200, "recorded")

    def log_message(self, format, *args):  # noqa: A002
        # One stderr line per request is noise in the journal; errors still go to stderr.
        pass


def serve(path, host="127.0.0.1", port=9095, heartbeat_timeout=300.0,
          grafana_url="http://localhost:3000"):
    """Build the server (not started); ``server.server_address`` has the bound port."""
    log = NotificationLog(path)
    watch = HeartbeatWatch(log, heartbeat_timeout)
    handler = type("BoundHandler", (Handler,), {"log": log, "watch": watch,
                                                "grafana_url": grafana_url})
    server = ThreadingHTTPServer((host, port), handler)
    server.watch = watch
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, help="JSON-lines file to append to")
    parser.add_argument("--listen", default="127.0.0.1:9095", help="HOST:PORT (port 0 = any)")
    parser.add_argument("--heartbeat-timeout", type=float, default=300,
                        help="seconds without a Watchdog before WatchdogHeartbeatMissing")
    parser.add_argument("--grafana-url", default="http://localhost:3000",
                        help="prefix of the alerts' dashboard links")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen wants HOST:PORT, got {args.listen!r}")
    if args.heartbeat_timeout <= 0:
        parser.error("--heartbeat-timeout must be positive")
    try:
        open(args.file, "a").close()
    except OSError as exc:
        print(f"alert_log_receiver: cannot write {args.file}: {exc}", file=sys.stderr)
        return 2
    server = serve(args.file, host, int(port), args.heartbeat_timeout, args.grafana_url)
    stop = threading.Event()
    watcher = threading.Thread(target=server.watch.run,
                               args=(stop, min(30.0, args.heartbeat_timeout / 4)), daemon=True)
    watcher.start()
    bound_host, bound_port = server.server_address[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
