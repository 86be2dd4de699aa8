#!/usr/bin/env python3
"""Local Alertmanager receiver: append every notification POSTed to it as one JSON line to a file.

Usage: alert_log_receiver.py --file /var/log/vigil-alerts/alerts.jsonl
           [--listen 127.0.0.1:9095]

Stdlib only, so the appliance runs it with the system Python. Any POST path is accepted (the
webhook posts to /alerts; tests also point Slack's and PagerDuty's URLs here to read the rendered
messages); each line is {"received_at", "path", "payload"}. GET /healthz answers 200. With port 0
the chosen port is printed on the first line of stdout ("listening on HOST:PORT").
"""
import argparse
import json
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 4 * 1024 * 1024  # Alertmanager batches are small; refuse anything absurd.


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


class Handler(BaseHTTPRequestHandler):
    log: NotificationLog  # set on the subclass built in serve()
    server_version = "vigil-alert-log/1"

    def _answer(self, status, message):
        body = json.dumps({"status": status, "message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == "/healthz":
            self._answer(200, "ok")
        else:
            self._answer(404, "POST notifications to any path; GET /healthz")

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
        self.log.append({
            "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "path": self.path,
            "payload": payload,
        })
        self._answer(200, "recorded")

    def log_message(self, format, *args):  # noqa: A002
        # One stderr line per request is noise in the journal; errors still go to stderr.
        pass


def serve(path, host="127.0.0.1", port=9095):
    """Build the server (not started); ``server.server_address`` has the bound port."""
    handler = type("BoundHandler", (Handler,), {"log": NotificationLog(path)})
    return ThreadingHTTPServer((host, port), handler)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, help="JSON-lines file to append to")
    parser.add_argument("--listen", default="127.0.0.1:9095", help="HOST:PORT (port 0 = any)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen wants HOST:PORT, got {args.listen!r}")
    try:
        open(args.file, "a").close()
    except OSError as exc:
        print(f"alert_log_receiver: cannot write {args.file}: {exc}", file=sys.stderr)
        return 2
    server = serve(args.file, host, int(port))
    bound_host, bound_port = server.server_address[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
