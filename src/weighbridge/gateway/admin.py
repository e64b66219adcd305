"""What the ``keys`` and ``audit`` commands do, kept out of the CLI module."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from . import state
from .audit import DEFAULT_KEY_ENV, Verdict, audit_key, default_head, open_head, open_sink, verify
from .auth import Period, new_key, period_of
from .plan import Plan
from .shared import PgKeys, SqliteKeys, open_keys


@contextlib.contextmanager
def _state(plan: Plan) -> Iterator[PgKeys | SqliteKeys]:
    """The plan's keys and spend: its SQLite file, or the Postgres database gateway processes share."""
    keys = open_keys(plan.resolve(plan.state))
    try:
        yield keys
    finally:
        keys.close()


def create_key(plan: Plan, name: str, **limits: Any) -> tuple[str, state.KeyRow]:
    token, row = new_key(name, **limits)
    with _state(plan) as keys:
        keys.insert_key(row)
    return token, row


def list_keys(plan: Plan) -> list[tuple[state.KeyRow, tuple[int, float, int]]]:
    with _state(plan) as keys:
        return [(k, keys.spend_of(k.id, period_of(k.period))) for k in keys.all_keys()]


def revoke(plan: Plan, key_id: str) -> bool:
    with _state(plan) as keys:
        return keys.revoke_key(key_id)


def has_keys(plan: Plan) -> bool:
    with _state(plan) as keys:
        return any(k.revoked is None for k in keys.all_keys())


def audit_url(plan: Plan, override: str | None) -> str:
    return override if override else plan.resolve(plan.audit.url)


def verify_audit(url: str, expect_head: str | None = None, head: str | None = None,
                 key_env: str | None = DEFAULT_KEY_ENV) -> tuple[str, Verdict]:
    """Verify the log at ``url`` against its anchored head (``head``, default beside the log) with
    the key from ``key_env`` when it is set."""
    key = audit_key(key_env)
    sink = open_sink(url)
    store = open_head(head or default_head(url), key)
    try:
        return sink.where, verify(sink, expect_head, key=key, head=store)
    finally:
        sink.close()
        store.close()


def reconcile(plan: Plan, url: str) -> tuple[list[str], list[str], int]:
    """Hold the audit log against the spend table: every request that settled a key's budget wrote
    an audit record saying what it settled, so per key the two sums must agree. A chain can be intact
    and still short of records that were never written; this is what finds them.
    (problems, warnings, keys compared)."""
    logged: dict[str, list[float]] = {}  # key -> [records that settled something, tokens, usd]
    unsettled: set[str] = set()  # keys with records from before records said what they settled
    sink = open_sink(url)
    try:
        for _, _, body, _, _ in sink.rows():
            try:
                rec = json.loads(body)
            except ValueError:
                continue  # verify() reports it
            key = rec.get("key") if isinstance(rec, dict) else None
            if not isinstance(key, str):
                continue
            settled = rec.get("settled")
            if not isinstance(settled, dict):
                unsettled.add(key)
                continue
            tokens, usd = settled.get("tokens") or 0, settled.get("usd") or 0.0
            row = logged.setdefault(key, [0, 0, 0.0])
            row[0] += 1 if tokens or usd else 0
            row[1] += tokens
            row[2] += usd
    finally:
        sink.close()
    with _state(plan) as keys:
        spent = keys.spend_totals()
    problems, warnings = [], []
    for key in sorted(set(spent) | set(logged)):
        if key in unsettled:
            warnings.append(f"key {key}: records from an older gateway do not say what they settled; its spend "
                            "was not compared with the log")
            continue
        requests_, tokens, usd = spent.get(key, (0, 0.0, 0))[2], *spent.get(key, (0, 0.0, 0))[:2]
        n, ltokens, lusd = logged.get(key, [0, 0, 0.0])
        if tokens != ltokens or abs(usd - lusd) > 1e-9 * max(1.0, abs(usd)):
            problems.append(f"key {key}: the spend table holds {requests_} settled requests and {tokens:,} tokens "
                            f"(${usd:.6f}), the audit log {int(n)} records settling {int(ltokens):,} tokens "
                            f"(${lusd:.6f}) - records missing, or spend written without one")
    return problems, warnings, len(set(spent) | set(logged))


def last_records(url: str, last: int) -> list[dict[str, Any]]:
    sink = open_sink(url)
    try:
        return [json.loads(body) for _, _, body, _, _ in sink.rows(last)]
    finally:
        sink.close()


__all__ = ["Period", "audit_url", "create_key", "has_keys", "last_records", "list_keys", "reconcile", "revoke",
           "verify_audit"]
