"""The verdict of a ``python_tests`` case, decided in weighbridge's own process.

The sandboxed harness (``harness.py``) copies each assert's operands into tagged plain values; here
they become Python values again - built from the tags, so no object of the model's can come back -
and are compared with the assert's operator. A step the harness had to decide itself (identity, or
no plain value to copy) carries its ``ok`` and, for the latter, ``in_process``; the reason says how
many there were, so a score never hides where it was decided.
"""

from __future__ import annotations

import math
import operator
from typing import Any

_SYMBOL = {"Eq": "==", "NotEq": "!=", "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "In": "in", "NotIn": "not in",
           "Is": "is", "IsNot": "is not"}
_OPS = {"Eq": operator.eq, "NotEq": operator.ne, "Lt": operator.lt, "LtE": operator.le, "Gt": operator.gt,
        "GtE": operator.ge, "In": lambda a, b: a in b, "NotIn": lambda a, b: a not in b}


class BadValue(ValueError):
    pass


def decode(tagged: Any) -> Any:
    """A tagged plain value from the harness, as the Python value it stood for."""
    if not isinstance(tagged, list) or not tagged or not isinstance(tagged[0], str):
        raise BadValue("not a tagged value")
    tag, rest = tagged[0], tagged[1:]
    if tag == "n":
        return None
    if tag == "b" and rest and isinstance(rest[0], bool):
        return rest[0]
    if tag == "i" and rest and isinstance(rest[0], str) and len(rest[0]) <= 4300:
        return int(rest[0])
    if tag == "f" and rest and isinstance(rest[0], str):
        return float(rest[0])
    if tag == "s" and rest and isinstance(rest[0], str):
        return rest[0]
    if tag == "y" and rest and isinstance(rest[0], str):
        return bytes.fromhex(rest[0])
    if tag == "c" and len(rest) == 2 and all(isinstance(x, str) for x in rest):
        return complex(float(rest[0]), float(rest[1]))
    if tag in "ltSF" and rest and isinstance(rest[0], list):
        items = [decode(x) for x in rest[0]]
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
    if tag == "d" and rest and isinstance(rest[0], list):
        out = {}
        for pair in rest[0]:
            if not isinstance(pair, list) or len(pair) != 2:
                raise BadValue("a dict item is not a pair")
            out[decode(pair[0])] = decode(pair[1])
        return out
    raise BadValue(f"unknown tag {tag!r}")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(c: dict[str, Any]) -> tuple[bool, str]:
    """(held, why not) for one recorded check."""
    op = c.get("op")
    if "left" not in c:  # decided by the harness
        ok = c.get("ok") is True
        return ok, "" if ok else (str(c.get("error") or f"{_SYMBOL.get(str(op), op)} does not hold"))
    try:
        left = decode(c["left"])
        if op == "truth":
            return bool(left), f"assert {_short(left)}: falsy"
        if op == "not":
            return not left, f"assert not {_short(left)}: truthy"
        right = decode(c.get("right"))
        held = bool(_OPS[str(op)](left, right))
    except (BadValue, KeyError, TypeError, ValueError, RecursionError, OverflowError) as e:
        return False, f"the check could not be made: {type(e).__name__}: {str(e)[:80]}"
    if held:
        return True, ""
    floats = isinstance(left, float) and isinstance(right, float) and op == "Eq" and math.isclose(left, right)
    hint = " (close: compare floats with a tolerance?)" if floats else ""
    return False, f"{_short(left)} {_SYMBOL[str(op)]} {_short(right)} does not hold{hint}"


def judge_steps(steps: list[dict[str, Any]]) -> tuple[bool, float, str]:
    """(passed, fraction of test statements that held, reason) from the harness's steps."""
    failed: list[tuple[int, str]] = []
    in_process = 0
    for s in steps:
        why = "" if s.get("ok") is True else str(s.get("error") or "failed")
        for c in s.get("checks") or []:
            if not isinstance(c, dict):
                continue
            in_process += 1 if c.get("in_process") else 0
            held, reason = _check(c)
            if not held and not why:
                where = f"(assert at line {c.get('line')}) " if c.get("line") != s.get("line") else ""
                why = f"{where}AssertionError: {reason}"
        s["held"] = not why
        if why:
            failed.append((int(s.get("line") or 0), why))
    n = len(steps)
    note = f"; {in_process} check(s) decided in the model's process (not plain values)" if in_process else ""
    if failed:
        line, why = failed[0]
        reason = f"{len(failed)} of {n} test statements failed; first at tests line {line}: {why}{note}"
        return False, (n - len(failed)) / n if n else 0.0, reason
    return True, 1.0, (f"all {n} test statements passed" if n else "ran to the end (no tests)") + note
