"""What the ``keys`` and ``audit`` commands do, kept out of the CLI module."""

from __future__ import annotations

import json
from typing import Any

from . import state
from .audit import Verdict, open_sink, verify
from .auth import Period, new_key, period_of
from .plan import Plan


def create_key(plan: Plan, name: str, **limits: Any) -> tuple[str, state.KeyRow]:
    token, row = new_key(name, **limits)
    db = state.connect(plan.resolve(plan.state))
    try:
        state.insert_key(db, row)
    finally:
        db.close()
    return token, row


def list_keys(plan: Plan) -> list[tuple[state.KeyRow, tuple[int, float, int]]]:
    db = state.connect(plan.resolve(plan.state))
    try:
        return [(k, state.spend_of(db, k.id, period_of(k.period))) for k in state.all_keys(db)]
    finally:
        db.close()


def revoke(plan: Plan, key_id: str) -> bool:
    db = state.connect(plan.resolve(plan.state))
    try:
        return state.revoke_key(db, key_id)
    finally:
        db.close()


def has_keys(plan: Plan) -> bool:
    db = state.connect(plan.resolve(plan.state))
    try:
        return any(k.revoked is None for k in state.all_keys(db))
    finally:
        db.close()


def audit_url(plan: Plan, override: str | None) -> str:
    return override if override else plan.resolve(plan.audit.url)


def verify_audit(url: str, expect_head: str | None = None) -> tuple[str, Verdict]:
    sink = open_sink(url)
    try:
        return sink.where, verify(sink, expect_head)
    finally:
        sink.close()


def last_records(url: str, last: int) -> list[dict[str, Any]]:
    sink = open_sink(url)
    try:
        return [json.loads(body) for _, _, body, _, _ in sink.rows(last)]
    finally:
        sink.close()


__all__ = ["Period", "audit_url", "create_key", "has_keys", "last_records", "list_keys", "revoke", "verify_audit"]
