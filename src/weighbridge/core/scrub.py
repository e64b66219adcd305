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

import copy
import json
import math
import os
import re
import threading
from typing import Any

MASK = "***"
_MIN_SECRET = 6  # shorter values would mask ordinary words; no real API key is this short
_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None
_bytes_pattern: re.Pattern[bytes] | None = None

_HEADER = re.compile(
    r"(?i)\b(proxy-authorization|authorization|x-api-key|api[-_]?key|x-goog-api-key)"
    r"([\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?([^\s\"',;}\]]+)")
_BEARER = re.compile(r"(?i)\b(bearer)\s+([A-Za-z0-9._~+/=-]{6,})")


def remember(value: str | None) -> None:
    """Register a secret value so that it never appears in anything scrubbed afterwards."""
    global _pattern, _bytes_pattern
    if not value or len(value) < _MIN_SECRET:
        return
    with _lock:
        if value not in _secrets:
            _secrets.add(value)
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))
            _bytes_pattern = re.compile(b"|".join(re.escape(s.encode()) for s in ordered))


def secret_env(name: str | None) -> str | None:
    """Read a secret from its env var, registering it with the scrubber in the same step."""
    if not name:
        return None
    value = os.environ.get(name)
    remember(value)
    return value


_WORDS = ("authorization", "api-key", "api_key", "apikey", "bearer")  # what _HEADER and _BEARER need to match


def _nothing_to_mask(text: str) -> bool:
    """A cheap test that ``scrub`` would leave ``text`` as it is: no registered secret in it, and none
    of the words the header and bearer patterns start from."""
    pattern = _pattern
    if pattern is not None and pattern.search(text):
        return False
    low = text.lower()
    return not any(w in low for w in _WORDS)


def scrub(text: str | None) -> str | None:
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def scrub_secrets(data: bytes) -> bytes:
    """Only the registered secret values, on raw bytes: the gateway's fast path for every streamed
    event it passes on (an upstream that echoes our key into its answer)."""
    pattern = _bytes_pattern
    return pattern.sub(MASK.encode(), data) if pattern is not None else data


def scrub_obj(obj: Any) -> Any:
    """``scrub`` through a JSON-like structure, dict keys included (an upstream can echo a key as a
    field name as easily as a value). Iterative, so no nesting depth can exhaust the stack; keys
    that become equal once masked merge, the later one winning. When nothing in it needs masking
    the structure itself is returned (not a copy): callers never mutate what they pass in."""
    if not isinstance(obj, (dict, list)):
        return scrub(obj) if isinstance(obj, str) else obj
    try:  # the common case, checked in one pass: nothing anywhere to mask, so nothing to copy
        if _nothing_to_mask(json.dumps(obj, ensure_ascii=False)):
            return obj
    except (TypeError, ValueError, RecursionError):
        pass
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(obj, root, 0)]  # (source, parent container, slot in it)
    while stack:
        src, parent, slot = stack.pop()
        if isinstance(src, dict):
            out: Any = {}
            for k, v in src.items():
                nk = scrub(k) if isinstance(k, str) else k
                out[nk] = None
                stack.append((v, out, nk))
        elif isinstance(src, list):
            out = [None] * len(src)
            for i, v in enumerate(src):
                stack.append((v, out, i))
        else:
            out = scrub(src) if isinstance(src, str) else src
        parent[slot] = out
    return root[0]


def finite(obj: Any, found: list[str] | None = None) -> Any:
    """A JSON-like value with every NaN or infinity replaced by None (JSON has neither; a stored NaN
    made every later report of the run crash); where each one was goes into ``found`` as a dotted
    path. ``obj`` itself is never changed: a copy is made only when there is something to replace.
    Iterative, like ``scrub_obj``."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        if found is not None:
            found.append("$")
        return None
    if not isinstance(obj, (dict, list)) or not _walk_nonfinite(obj, None):
        return obj
    obj = copy.deepcopy(obj)
    _walk_nonfinite(obj, found if found is not None else [])
    return obj


def _walk_nonfinite(obj: Any, found: list[str] | None) -> bool:
    """Whether ``obj`` holds a non-finite float; with ``found``, replace each by None and note where."""
    hit = False
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        node, path = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in list(items):
            if isinstance(v, float) and not math.isfinite(v):
                if found is None:
                    return True
                hit = True
                node[k] = None
                found.append(f"{path}.{k}" if path else str(k))
            elif isinstance(v, (dict, list)):
                stack.append((v, f"{path}.{k}" if path else str(k)))
    return hit
