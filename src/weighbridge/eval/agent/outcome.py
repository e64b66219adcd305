"""Scoring an episode by what it left behind: the environment's end state against the state the gold
calls reach when they are replayed in a fresh environment (tau-bench compares the database the same
way; BFCL compares state after every turn). States are compared as canonical JSON; ``subset`` mode
lets the episode's state hold more than the gold one (ids, timestamps, notes a model may add). The
first path that differs is the reason.
"""

from __future__ import annotations

import json
from typing import Any

from .sandboxed import SandboxedEnvironment


def canonical(value: Any) -> Any:
    """The value as JSON reads it back (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def first_difference(expected: Any, actual: Any, *, subset: bool = False, path: str = "$") -> str | None:
    """Where ``actual`` departs from ``expected`` (None when it does not)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected):
            if key not in actual:
                return f"{path}.{key}: missing (expected {json.dumps(expected[key])[:80]})"
            found = first_difference(expected[key], actual[key], subset=subset, path=f"{path}.{key}")
            if found:
                return found
        extra = sorted(set(actual) - set(expected))
        if extra and not subset:
            return f"{path}.{extra[0]}: not expected (got {json.dumps(actual[extra[0]])[:80]})"
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (e, a) in enumerate(zip(expected, actual)):
            found = first_difference(e, a, subset=subset, path=f"{path}[{i}]")
            if found:
                return found
        if len(expected) != len(actual):
            return f"{path}: {len(actual)} items, expected {len(expected)}"
        return None
    if expected != actual or type(expected) is not type(actual) and not (
            isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and not isinstance(expected, bool)
            and not isinstance(actual, bool)):
        return f"{path}: {json.dumps(actual)[:80]}, expected {json.dumps(expected)[:80]}"
    return None


def replay(source: str, class_name: str, initial_state: dict[str, Any], gold: list[list[dict[str, Any]]],
           *, mode: str = "bubblewrap") -> Any:
    """The state the gold calls reach, turn by turn, in a fresh sandboxed environment. A gold call that
    fails is a broken task, not a model's failure: it raises ValueError naming the call."""
    with SandboxedEnvironment(source, class_name, initial_state, mode=mode) as env:
        for turn, calls in enumerate(gold):
            for call in calls:
                result = env.call(call["name"], call.get("arguments") or {})
                if not result.ok:
                    raise ValueError(f"gold call {call['name']} of turn {turn + 1} failed: {result.error}")
        return canonical(env.state())
