"""JSON values compared as JSON reads them, with the first path where they part: how an agent
episode's end state is held against the gold replay's (and BFCL's per-turn states against theirs)."""

from __future__ import annotations

import json
from typing import Any, Iterator


def canonical(value: Any) -> Any:
    """The value as JSON reads it back (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def _numbers(a: Any, b: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))


def differences(expected: Any, actual: Any, *, subset: bool = False, path: str = "$") -> Iterator[str]:
    """Every path where ``actual`` departs from ``expected``, in key order, each with both values."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected):
            if key not in actual:
                yield f"{_key(path, key)}: missing (expected {json.dumps(expected[key])[:80]})"
            else:
                yield from differences(expected[key], actual[key], subset=subset, path=_key(path, key))
        if not subset:
            for key in sorted(set(actual) - set(expected)):
                yield f"{_key(path, key)}: not expected (got {json.dumps(actual[key])[:80]})"
    elif isinstance(expected, list) and isinstance(actual, list):
        for i, (e, a) in enumerate(zip(expected, actual)):
            yield from differences(e, a, subset=subset, path=f"{path}[{i}]")
        if len(expected) != len(actual):
            yield f"{path}: {len(actual)} items, expected {len(expected)}"
    elif expected != actual or (type(expected) is not type(actual) and not _numbers(expected, actual)):
        yield f"{path}: {json.dumps(actual)[:80]}, expected {json.dumps(expected)[:80]}"


def first_difference(expected: Any, actual: Any, *, subset: bool = False) -> str | None:
    """Where ``actual`` first departs from ``expected`` (None when it does not)."""
    return next(differences(expected, actual, subset=subset), None)


def first_divergence(gold_states: list[Any], states: list[Any], *, subset: bool = False) -> int | None:
    """The first turn (1-based) after which the episode's state departs from the gold one; None when
    every turn the episode finished agrees."""
    for turn, (expected, actual) in enumerate(zip(gold_states, states), 1):
        if first_difference(expected, canonical(actual), subset=subset):
            return turn
    return None
