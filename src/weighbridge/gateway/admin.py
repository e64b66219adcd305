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


def last_records(url: str, last: int) -> list[dict[str, Any]]:
    sink = open_sink(url)
    try:
        return [json.loads(body) for _, _, body, _, _ in sink.rows(last)]
    finally:
        sink.close()


__all__ = ["Period", "audit_url", "create_key", "has_keys", "last_records", "list_keys", "revoke", "verify_audit"]
