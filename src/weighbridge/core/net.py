"""Two questions about a host, answered in one place because they differ exactly at 0.0.0.0.

- Does a URL reach *this machine*? A connection to localhost, any loopback address, or the
  unspecified address (0.0.0.0, ::, which Linux connects to the local host) stays here: such a model
  computes on our CPUs (the engine keeps it apart from other local models) and such an upstream sees
  prompts only this machine sees (the gateway need not redact them).
- Does *binding* a host expose a server to loopback only? Binding 0.0.0.0 listens on every
  interface, so there the answer is no: only localhost and loopback addresses count.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def binds_loopback_only(host: str) -> bool:
    """A bind address that only this machine can reach."""
    ip = _ip(host)
    return host.lower() == "localhost" or (ip is not None and ip.is_loopback)


def url_is_this_machine(url: str | None) -> bool:
    """A URL whose connections stay on this machine (no URL: an in-process model, also here)."""
    if url is None:
        return True
    host = (urlsplit(url).hostname or "").lower()
    ip = _ip(host)
    return host == "localhost" or (ip is not None and (ip.is_loopback or ip.is_unspecified))
