"""BFCL's rules for single-turn function calls (its "AST" categories), for the ``tool_call`` scorer's
``rules: bfcl`` mode: the verdicts must be the ones BFCL's own checker gives, case by case
(``tests/test_bfcl.py`` holds them against ``bfcl_eval``'s checker on recorded and constructed
answers), so its quirks are kept on purpose and named where they surprise:

- a call is ``{name: arguments}``; a function name with dots is expected with underscores, as
  BFCL asks of function-calling models (OpenAI-style names cannot hold dots);
- every required parameter must be given, and no parameter the function or the answer key does not
  know; an expected parameter may be left out only where its allowed values include ``""``;
- types come from the function document (``float`` accepts an int, but not inside a list; a value of
  the answer key's own type is taken as a "variable" and skips the value check's special cases);
- strings are compared after BFCL's standardisation (spaces and ``,./-_*^`` removed, lower case,
  ``'`` as ``"``), also inside lists and dicts (one level); other values by Python equality (so
  ``1 == 1.0`` and ``True == 1``, as BFCL compares them);
- ``parallel`` categories match calls to expected calls in any order, greedily in the expected
  order (first unused call that passes); ``multiple`` wants exactly one call; ``irrelevance`` passes
  when no call was made, ``relevance`` when one was; accuracy is over every case, errors included.
"""

from __future__ import annotations

import re
from typing import Any, cast

_PY = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list, "tuple": list, "dict": dict,
       "any": str}
_STRIP = re.compile(r"[ ,./\-_*^]")
Verdict = tuple[bool, str]


def standardise(text: str) -> str:
    return _STRIP.sub("", text).lower().replace("'", '"')


def _std_all(values: Any) -> list[Any]:
    """A sequence's items, strings standardised (a string iterates by character, as BFCL's loop does)."""
    return [standardise(v) if isinstance(v, str) else v for v in values]


def _answer_type(allowed: list[Any]) -> type | None:
    return next((type(a) for a in allowed if a != ""), None)


def _type_ok(value: Any, allowed: list[Any], want: type, inner: type | None) -> tuple[bool, bool]:
    """(type accepted, value taken as a variable) - BFCL's type check, one level of nesting."""
    answer_type = _answer_type(allowed)
    variable = answer_type is not None and answer_type != want
    if type(value) is want:
        if inner is None:
            return True, variable
        values = cast(list[Any], value)  # want is list here: only arrays and tuples have an inner type
        for item in allowed:
            if not isinstance(item, list) or all(_type_ok(v, item, inner, None)[0] for v in values):
                return True, variable
        return False, False
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, False


def _dict_ok(value: dict[str, Any], allowed: list[Any]) -> bool:
    for option in allowed:
        if option == "":
            continue
        if all(k in option and (standardise(v) if isinstance(v, str) else v) in _std_all(option[k])
               for k, v in value.items()) and all(k in value or "" in vals for k, vals in option.items()):
            return True
    return False


def _list_of_dicts_ok(value: list[Any], allowed: list[Any]) -> bool:
    for option in allowed:
        if len(value) == len(option) and all(_dict_ok(v, [o]) for v, o in zip(value, option)):
            return True
    return False


def _list_ok(value: list[Any], allowed: list[Any]) -> bool:
    options = [_std_all(o) for o in allowed if isinstance(o, (list, str, tuple))]
    return _std_all(value) in options


def _value_ok(name: str, value: Any, allowed: list[Any], doc: dict[str, Any]) -> str | None:
    """Why one parameter's value fails (None when it passes)."""
    kind = doc.get("type")
    want = _PY.get(kind) if isinstance(kind, str) else None
    if want is None:
        return f"parameter {name!r}: the function document's type {kind!r} is not one BFCL checks"
    inner = None
    if kind in ("array", "tuple"):
        inner_kind = (doc.get("items") or {}).get("type")
        inner = _PY.get(inner_kind) if isinstance(inner_kind, str) else None
        if inner is None:
            return f"parameter {name!r}: the function document's item type {inner_kind!r} is not one BFCL checks"
    if kind == "float" and type(value) is int:
        value = float(value)
    ok, variable = _type_ok(value, allowed, want, inner)
    if not ok:
        return f"parameter {name!r}: expected type {kind}, got {type(value).__name__} ({value!r})"
    if not variable:
        if want is dict:
            return None if _dict_ok(value, allowed) else f"parameter {name!r}: {value!r} is none of {allowed}"
        if want is list and inner is dict:
            return None if _list_of_dicts_ok(value, allowed) else f"parameter {name!r}: {value!r} is none of {allowed}"
        if want is str:
            return None if standardise(value) in _std_all(a for a in allowed if isinstance(a, str)) else \
                f"parameter {name!r}: {value!r} is none of {allowed} (strings compared standardised)"
        if want is list:
            return None if _list_ok(value, allowed) else f"parameter {name!r}: {value!r} is none of {allowed}"
    return None if value in allowed else f"parameter {name!r}: {value!r} is none of {allowed}"


def expected_name(function: dict[str, Any]) -> str:
    return str(function["name"]).replace(".", "_")


def check_call(function: dict[str, Any], call: dict[str, Any], answer: dict[str, Any]) -> str | None:
    """Why one call fails against one expected call and its function's document (None: it passes)."""
    expected = next(iter(answer.values()))
    name = expected_name(function)
    if name not in call:
        return f"function {name!r} not called (called {', '.join(map(repr, call))})"
    params = call[name]
    props = (function.get("parameters") or {}).get("properties") or {}
    for required in (function.get("parameters") or {}).get("required") or []:
        if required not in params:
            return f"missing required parameter {required!r}"
    for param, value in params.items():
        if param not in props or param not in expected:
            return f"unexpected parameter {param!r}"
        why = _value_ok(param, value, expected[param], props[param])
        if why:
            return why
    for param, allowed in expected.items():
        if param not in params and "" not in allowed:
            return f"parameter {param!r} left out, and the answer key does not mark it optional"
    return None


def _document(functions: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next((f for f in functions if f.get("name") == name), functions[0])


def check(category: str, functions: list[dict[str, Any]], calls: list[dict[str, Any]] | None,
          answers: list[dict[str, Any]]) -> Verdict:
    """BFCL's verdict for one answer: ``calls`` are ``{name: arguments}`` (None: the answer held no
    decodable call - text, or arguments that are not a JSON object)."""
    decoded = bool(calls) and all(len(c) == 1 and isinstance(next(iter(c.values())), dict) for c in calls or [])
    if "irrelevance" in category:
        return (True, "no call, as expected") if not decoded else (False, "called a function where none applies")
    if "relevance" in category:
        return (True, "called a function") if decoded else (False, "no function call")
    if not decoded or calls is None:
        return False, "no decodable function call"
    if "parallel" in category or "multiple" in category:
        if len(calls) != len(answers):
            return False, f"{len(calls)} call(s), expected {len(answers)}"
    elif len(calls) != 1:
        return False, f"{len(calls)} calls, expected 1"
    if "parallel" in category:
        used: set[int] = set()
        for i, answer in enumerate(answers):
            doc = _document(functions, next(iter(answer)))
            match = next((j for j, call in enumerate(calls) if j not in used and check_call(doc, call, answer) is None),
                         None)
            if match is None:
                return False, f"no call matches expected call {i + 1} ({expected_name(doc)})"
            used.add(match)
        return True, f"{len(answers)} call(s) right"
    doc = functions[0] if "multiple" not in category else _document(functions, next(iter(answers[0])))
    why = check_call(doc, calls[0], answers[0])
    return (True, "call right") if why is None else (False, why)
