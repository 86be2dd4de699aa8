"""The host guard: load goes only to loopback or to an appliance someone named on purpose."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


class UnsafeHost(ValueError):
    """The target host is neither loopback nor on the allow-list."""


def _allowed(hostname: str, allow_list: str) -> bool:
    for entry in (e.strip().lower() for e in allow_list.split(",")):
        if not entry:
            continue
        if entry == hostname:
            return True
        try:
            if ipaddress.ip_address(hostname) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def check_host(url: str | None, allow_list: str = "") -> str:
    """Return the hostname of ``url`` when load may go there, else raise UnsafeHost.

    Names are not resolved: a name other than ``localhost`` could point anywhere, so it has to
    be on the allow-list (``VIGIL_LOAD_ALLOWED_HOSTS``) literally.
    """
    if not url:
        raise UnsafeHost("no target host given (use --host or HOST=http://127.0.0.1:8000)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeHost(f"target host must be an http(s) URL, got {url!r}")
    hostname = parts.hostname.lower()
    if hostname == "localhost":
        return hostname
    try:
        if ipaddress.ip_address(hostname).is_loopback:
            return hostname
    except ValueError:
        pass
    if _allowed(hostname, allow_list):
        return hostname
    raise UnsafeHost(
        f"refusing to send load to {hostname}: only loopback (127.0.0.0/8, ::1, localhost) "
        "or hosts named in VIGIL_LOAD_ALLOWED_HOSTS / --allowed-hosts (the appliance under "
        "test) may be loaded"
    )
