"""Domain signals the API sends and telemetry listens to, so views carry no metric plumbing."""
from blinker import Namespace

_signals = Namespace()

#: An authentication event happened. Keyword arguments: ``event`` (one of
#: login_success, login_failure, lockout, refresh, refresh_reuse, logout) and
#: optionally ``user_id``.
auth_event = _signals.signal("auth-event")

#: One SQL statement finished. Keyword arguments: ``duration`` (seconds, float)
#: and ``failed`` (bool: the database raised).
query_executed = _signals.signal("query-executed")
