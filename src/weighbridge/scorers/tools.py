"""The ``tool_call`` scorer: the calls a model made, checked as data (names, arguments, types,
values), not as text.

``expected`` is a list of calls (``[]`` or ``none`` when the model must not call anything)::

    expected:
      - name: get_weather
        arguments:
          city: {one_of: [Paris, "Paris, FR"]}   # any of these
          unit: {value: celsius, optional: true}  # may be left out; checked when given
          days: {value: 3, tolerance: 0.5}        # numbers within a tolerance
          filters: {type: object}                 # any object
          when: {date: "2025-01-03"}              # a literal object: its keys checked one by one

An argument's matcher is either a literal (string, number, bool, list, object) or a mapping of
matcher keys: ``value``, ``one_of``, ``type`` (string, number, integer, boolean, object, array,
null), ``tolerance`` (absolute, for numbers), ``optional``. Strings compare after Unicode NFKC,
whitespace collapsing and case folding (``strings: exact`` turns that off); numbers compare
numerically, so ``3`` matches ``3.0``, and a number given as a string ("3") does not match unless
``coerce_numbers`` is set. Every argument the expected call names is required unless optional;
arguments it does not name are allowed unless ``extra_arguments: forbid``.

Parallel calls match in any order (``order: strict`` to require the order given). Score value:
matched calls / max(expected calls, calls made); passed only when every expected call matched and
no other call was made (``extra_calls: allow`` lets extra calls through). A call whose arguments
are not JSON never matches and says why.
"""

from __future__ import annotations

import math
import unicodedata
from itertools import permutations
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from . import bfcl_rules
from .base import JudgeContext, Score, ScorerSpec, Target

if TYPE_CHECKING:
    from ..core.types import Generation

_MATCHER_KEYS = {"value", "one_of", "type", "tolerance", "optional"}
_TYPES = {"string": str, "number": (int, float), "integer": int, "boolean": bool, "object": dict, "array": list,
          "null": type(None)}


class ToolCallSpec(ScorerSpec):
    order: Literal["any", "strict"] = "any"
    extra_calls: Literal["forbid", "allow"] = "forbid"
    extra_arguments: Literal["allow", "forbid"] = "allow"
    strings: Literal["normalised", "exact"] = "normalised"
    coerce_numbers: bool = False
    tolerance: float = 1e-6  # default for numbers compared without their own tolerance
    rules: Literal["weighbridge", "bfcl"] = "weighbridge"  # bfcl: BFCL's checker's verdicts (bfcl_rules.py)
    category: str = ""  # with rules: bfcl - simple, multiple, parallel, parallel_multiple, irrelevance, live_...
    functions: list[dict[str, Any]] = Field(default_factory=list)  # with rules: bfcl - BFCL's function documents


def _is_matcher(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and set(v) <= _MATCHER_KEYS


class _ToolCall:
    kind = "tool_call"
    Spec = ToolCallSpec

    def __init__(self, s: ToolCallSpec) -> None:
        self.s = s

    async def evaluate(self, case: Target, generation: Generation, ctx: JudgeContext) -> Score:
        """Reads the structured calls the backend parsed, not the text."""
        if self.s.rules == "bfcl":
            calls = generation.tool_calls or []
            decoded = None if any(c.get("arguments") is None for c in calls) else [
                {c["name"]: c["arguments"]} for c in calls]
            passed, why = bfcl_rules.check(self.s.category, self.s.functions, decoded, case.expected or [])
            return Score(passed, float(passed), f"BFCL: {why}"[:500])
        return self.score_calls(generation.tool_calls, case.expected)

    # -- values -------------------------------------------------------------------------------
    def _norm(self, s: str) -> str:
        if self.s.strings == "exact":
            return s
        return " ".join(unicodedata.normalize("NFKC", s).split()).casefold()

    def _equal(self, want: Any, got: Any, tol: float | None) -> bool:
        if isinstance(want, bool) or isinstance(got, bool):
            return type(want) is type(got) and want == got
        if isinstance(want, (int, float)):
            if isinstance(got, str) and self.s.coerce_numbers:
                try:
                    got = float(got)
                except ValueError:
                    return False
            if not isinstance(got, (int, float)):
                return False
            return math.isclose(float(got), float(want), rel_tol=0.0, abs_tol=self.s.tolerance if tol is None else tol)
        if isinstance(want, str):
            return isinstance(got, str) and self._norm(got) == self._norm(want)
        if isinstance(want, list):
            return isinstance(got, list) and len(got) == len(want) and all(
                self._value(w, g) is None for w, g in zip(want, got))
        if isinstance(want, dict):
            return isinstance(got, dict) and self._object(want, got) is None
        return bool(want == got)

    def _value(self, want: Any, got: Any) -> str | None:
        """None when ``got`` satisfies the matcher or literal ``want``, else why not."""
        if not _is_matcher(want):
            return None if self._equal(want, got, None) else f"expected {want!r}, got {got!r}"
        if "type" in want:
            t = _TYPES.get(str(want["type"]))
            if t is None:
                return f"unknown type {want['type']!r} in the expected call"
            ok = isinstance(got, t) and not (want["type"] in ("number", "integer") and isinstance(got, bool))
            if not ok:
                return f"expected a {want['type']}, got {type(got).__name__} {got!r}"
        tol = want.get("tolerance")
        if "value" in want and not self._equal(want["value"], got, tol):
            return f"expected {want['value']!r}" + (f" ± {tol}" if tol is not None else "") + f", got {got!r}"
        if "one_of" in want and not any(self._equal(w, got, tol) for w in want["one_of"]):
            return f"expected one of {want['one_of']!r}, got {got!r}"
        return None

    def _object(self, want: dict[str, Any], got: dict[str, Any], where: str = "") -> str | None:
        for key, matcher in want.items():
            optional = _is_matcher(matcher) and bool(matcher.get("optional"))
            if key not in got:
                if not optional:
                    return f"argument '{where}{key}' is missing"
                continue
            if isinstance(matcher, dict) and not _is_matcher(matcher):
                if not isinstance(got[key], dict):
                    return f"argument '{where}{key}': expected an object, got {got[key]!r}"
                why = self._object(matcher, got[key], f"{where}{key}.")
            else:
                why = self._value(matcher, got[key])
                why = why and f"argument '{where}{key}': {why}"
            if why:
                return why
        if self.s.extra_arguments == "forbid":
            extra = sorted(set(got) - set(want))
            if extra:
                return f"unexpected argument(s) {', '.join(where + e for e in extra)}"
        return None

    def _call(self, want: dict[str, Any], got: dict[str, Any]) -> str | None:
        if got.get("name") != want.get("name"):
            return f"called {got.get('name')!r}, expected {want.get('name')!r}"
        if got.get("error"):
            return f"{got['name']}: {got['error']}"
        return self._object(want.get("arguments") or {}, got.get("arguments") or {})

    # -- calls ------------------------------------------------------------------------------------
    def score_calls(self, calls: list[dict[str, Any]] | None, expected: Any) -> Score:
        want = [] if expected in (None, "none", []) else expected
        if not isinstance(want, list) or not all(isinstance(w, dict) and isinstance(w.get("name"), str) for w in want):
            return Score(False, 0.0, "expected must be a list of calls ({name, arguments}) or none")
        got = list(calls or [])
        if not want:
            if not got:
                return Score(True, 1.0, "no call, as expected")
            return Score(False, 0.0, f"expected no call, got {', '.join(repr(c.get('name')) for c in got)}")
        if not got:
            return Score(False, 0.0, f"no call made; expected {', '.join(repr(w['name']) for w in want)}")
        matched, reasons = self._best(want, got)
        denominator = len(want) if self.s.extra_calls == "allow" else max(len(want), len(got))
        value = matched / denominator
        passed = matched == len(want) and (self.s.extra_calls == "allow" or len(got) == len(want))
        if passed:
            return Score(True, value, f"{matched}/{len(want)} call(s) right")
        why = "; ".join(reasons[:3]) if reasons else f"{len(got) - len(want)} call(s) more than expected"
        return Score(False, value, f"{matched}/{len(want)} call(s) right: {why}")

    def _best(self, want: list[dict[str, Any]], got: list[dict[str, Any]]) -> tuple[int, list[str]]:
        """Most expected calls matched by distinct calls made (in order, or any order); with it, why
        each unmatched expected call failed against its closest candidate."""
        ok = [[self._call(w, g) is None for g in got] for w in want]
        if self.s.order == "strict":
            pairs = list(zip(range(len(want)), range(len(got))))
            matched = sum(ok[i][j] for i, j in pairs)
            reasons = [self._call(want[i], got[j]) or "" for i, j in pairs if not ok[i][j]]
            reasons += [f"expected call {want[i]['name']!r} not made" for i in range(len(got), len(want))]
            return matched, reasons
        best, best_assign = -1, None
        if len(got) <= 7 and len(want) <= 7:
            for perm in permutations(range(len(got)), min(len(want), len(got))):
                n = sum(ok[i][j] for i, j in enumerate(perm))
                if n > best:
                    best, best_assign = n, perm
        else:  # greedy beyond 7 calls: still order-free, not provably optimal
            used: set[int] = set()
            assign = []
            for i in range(len(want)):
                j = next((j for j in range(len(got)) if ok[i][j] and j not in used), None)
                if j is not None:
                    used.add(j)
                assign.append(j if j is not None else -1)
            best, best_assign = sum(1 for a in assign if a >= 0), tuple(assign)
        reasons = []
        for i, w in enumerate(want):
            j = best_assign[i] if best_assign is not None and i < len(best_assign) else -1
            if j is None or j < 0 or not ok[i][j]:
                same = [g for g in got if g.get("name") == w["name"]]
                if same:  # the closest call: same function, wrong arguments
                    reasons.append(self._call(w, same[0]))
                elif j is not None and j >= 0:
                    reasons.append(self._call(w, got[j]))
                else:
                    reasons.append(f"expected call {w['name']!r} not made")
        return best, [r for r in reasons if r]

    def score(self, text: str, expected: Any) -> Score:  # the Scorer protocol: text alone has no calls
        return self.score_calls([], expected)


