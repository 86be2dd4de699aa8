"""Domain signals the API sends and telemetry listens to, so views carry no metric plumbing.

Every signal is sent with the Flask app as sender, except ``query_executed`` (the peewee
database that ran the statement), so each app's telemetry hears its own app only.
"""
from blinker import Namespace

_signals = Namespace()

#: An authentication event happened. Keyword arguments: ``event`` (one of
#: login_success, login_failure, lockout, refresh, refresh_reuse, logout) and
#: optionally ``user_id``.
auth_event = _signals.signal("auth-event")

#: A request presented a valid, unrevoked access or refresh token. Keyword argument:
#: ``user_id`` (the token's subject).
request_authenticated = _signals.signal("request-authenticated")

#: A fire-drill fault switch acted on a request. Keyword argument: ``kind`` (error,
#: latency or readiness).
fault_injected = _signals.signal("fault-injected")

#: One SQL statement finished. Keyword arguments: ``duration`` (seconds, float)
#: and ``failed`` (bool: the database raised).
query_executed = _signals.signal("query-executed")
