"""The one scrubber: secrets out of every text weighbridge stores, prints or passes on.

Upstream error bodies echo request headers, exceptions quote URLs with keys, model output repeats
what it was shown. Everything that reaches the store, a report, the terminal or a gateway client
passes through ``scrub``, which replaces
- every secret value weighbridge has read (each key is registered by ``secret_env`` at the moment
  it is read from its env var: models', judges' and gateway upstreams' ``api_key_env``), and
- the value of any ``Authorization``/``Proxy-Authorization``/``api-key``/``x-api-key`` header or
  field, and any ``Bearer`` token, whatever its value,
with ``***``.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

MASK = "***"
_MIN_SECRET = 6  # shorter values would mask ordinary words; no real API key is this short
_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None

_HEADER = re.compile(
    r"(?i)\b(proxy-authorization|authorization|x-api-key|api[-_]?key|x-goog-api-key)"
    r"([\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?([^\s\"',;}\]]+)")
_BEARER = re.compile(r"(?i)\b(bearer)\s+([A-Za-z0-9._~+/=-]{6,})")


def remember(value: str | None) -> None:
    """Register a secret value so that it never appears in anything scrubbed afterwards."""
    global _pattern
    if not value or len(value) < _MIN_SECRET:
        return
    with _lock:
        if value not in _secrets:
            _secrets.add(value)
            _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def secret_env(name: str | None) -> str | None:
    """Read a secret from its env var, registering it with the scrubber in the same step."""
    if not name:
        return None
    value = os.environ.get(name)
    remember(value)
    return value


def scrub(text: str | None) -> str | None:
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def scrub_obj(obj: Any) -> Any:
    """``scrub`` through a JSON-like structure (dict keys are left alone)."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {k: scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_obj(v) for v in obj]
    return obj
