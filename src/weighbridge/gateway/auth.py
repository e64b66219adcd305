"""API keys, per-key rate limits and token / dollar budgets.

Keys are 256-bit random strings shown once at creation; only their sha256 is stored (a slow
password hash buys nothing for a key with that much entropy, and would cost every request).
Budgets are *reserved* before the upstream call (prompt estimate + the request's max_tokens, at
the dearest price the route could reach) and *settled* from the usage the upstream reports, so a
burst of concurrent requests cannot overspend: each one has to fit beside what is already held.
Budget state lives in this process; run one gateway process per state file.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Literal

from ..core.errors import WeighbridgeError
from . import state

Period = Literal["total", "day", "month"]


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_key(name: str, *, rpm: int | None = None, max_tokens: int | None = None, max_usd: float | None = None,
            period: Period = "total", routes: list[str] | None = None) -> tuple[str, state.KeyRow]:
    """A fresh key: (the secret, to show once; the row to store, holding only its hash)."""
    token = "wb-" + secrets.token_urlsafe(32)
    row = state.KeyRow(id="key_" + secrets.token_hex(4), name=name, hash=hash_key(token), created=time.time(),
                       revoked=None, rpm=rpm, max_tokens=max_tokens, max_usd=max_usd, period=period, routes=routes)
    return token, row


def period_of(period: str, now: float | None = None) -> str:
    t = time.gmtime(now if now is not None else time.time())
    if period == "day":
        return time.strftime("%Y-%m-%d", t)
    if period == "month":
        return time.strftime("%Y-%m", t)
    return "total"


@dataclass
class Reservation:
    key_id: str
    period: str
    tokens: int
    usd: float
    held: bool = True  # False: the key has no budget, nothing was held, only the spend is recorded


@dataclass
class _Bucket:
    tokens: float
    at: float


class Denied(WeighbridgeError):
    def __init__(self, status: int, message: str, code: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


class Guard:
    """Who may call, how often, and how much they may still spend."""

    persists_spend = False  # settled spend is written by the gateway's writer thread (a shared guard writes its own)

    def __init__(self, read_db: sqlite3.Connection, *, reload_s: float = 2.0) -> None:
        self.db = read_db
        self.reload_s = reload_s
        self.by_hash: dict[str, state.KeyRow] = {}
        self.any_keys = False
        self._loaded_at = 0.0
        self._buckets: dict[str, _Bucket] = {}
        self._spent: dict[tuple[str, str], list[float]] = {}     # (key, period) -> [tokens, usd]
        self._reserved: dict[tuple[str, str], list[float]] = {}
        self.reload()

    def reload(self) -> None:
        """Pick up keys created or revoked by the CLI while serving."""
        rows = state.all_keys(self.db)
        self.any_keys = bool(rows)
        self.by_hash = {r.hash: r for r in rows if r.revoked is None}
        self._loaded_at = time.monotonic()

    def authenticate(self, authorization: str | None, route: str | None) -> state.KeyRow | None:
        """The caller's key row; None when the gateway runs without keys (loopback only). With
        ``route`` None only the key itself is checked (a malformed request names no usable route)."""
        if time.monotonic() - self._loaded_at > self.reload_s:
            self.reload()
        if not self.any_keys:
            return None
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Denied(401, "missing API key: send 'Authorization: Bearer <key>'", "invalid_api_key")
        row = self.by_hash.get(hash_key(authorization[7:].strip()))
        if row is None:
            raise Denied(401, "invalid or revoked API key", "invalid_api_key")
        if route is not None and row.routes is not None and route not in row.routes:
            raise Denied(403, f"this key may not use route '{route}'", "route_not_allowed")
        return row

    def rate(self, key: state.KeyRow, now: float | None = None) -> None:
        """Token bucket: ``rpm`` requests a minute, with bursts up to ``rpm``."""
        if not key.rpm:
            return
        now = time.monotonic() if now is None else now
        b = self._buckets.get(key.id)
        if b is None:
            b = self._buckets[key.id] = _Bucket(float(key.rpm), now)
        b.tokens = min(float(key.rpm), b.tokens + (now - b.at) * key.rpm / 60.0)
        b.at = now
        if b.tokens < 1.0:
            raise Denied(429, f"rate limit: {key.rpm} requests per minute for key {key.id}", "rate_limit_exceeded",
                         retry_after=(1.0 - b.tokens) * 60.0 / key.rpm)
        b.tokens -= 1.0

    def _spent_of(self, k: tuple[str, str]) -> list[float]:
        if k not in self._spent:
            tokens, usd, _ = state.spend_of(self.db, *k)
            self._spent[k] = [float(tokens), usd]
        return self._spent[k]

    def reserve(self, key: state.KeyRow, tokens: int, usd: float) -> Reservation:
        k = (key.id, period_of(key.period))
        spent, held = self._spent_of(k), self._reserved.setdefault(k, [0.0, 0.0])
        if key.max_tokens is not None and spent[0] + held[0] + tokens > key.max_tokens:
            raise Denied(429, f"token budget of key {key.id} exhausted: {int(spent[0])} used + {int(held[0])} "
                              f"held + {tokens} for this request > {key.max_tokens} ({key.period})",
                         "insufficient_quota")
        if key.max_usd is not None and spent[1] + held[1] + usd > key.max_usd + 1e-12:
            raise Denied(429, f"dollar budget of key {key.id} exhausted: ${spent[1]:.6f} used + ${held[1]:.6f} "
                              f"held + ${usd:.6f} for this request > ${key.max_usd} ({key.period})",
                         "insufficient_quota")
        held[0] += tokens
        held[1] += usd
        return Reservation(key.id, k[1], tokens, usd)

    def settle(self, r: Reservation, tokens: int, usd: float) -> None:
        k = (r.key_id, r.period)
        held, spent = self._reserved[k], self._spent_of(k)
        held[0] -= r.tokens
        held[1] -= r.usd
        spent[0] += tokens
        spent[1] += usd

    def close(self) -> None:
        """Nothing to flush: this guard's spend goes through the gateway's writer."""

