"""Deterministic text checks: exact, contains, regex and numeric-with-tolerance."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Literal

from pydantic import Field, field_validator

from .base import Score, ScorerSpec, TextScorer, final_answer

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def _normalise(s: str, ignore_case: bool, strip_punct: bool) -> str:
    s = unicodedata.normalize("NFKC", s)
    s = " ".join(s.split())
    if ignore_case:
        s = s.casefold()
    if strip_punct:
        s = s.strip(" .,!?;:'\"`。，！？；：")
    return s


def _as_list(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


class ExactSpec(ScorerSpec):
    value: Any = None
    ignore_case: bool = True
    strip_punctuation: bool = True


class _Exact(TextScorer):
    kind = "exact"
    Spec = ExactSpec

    def __init__(self, s: ExactSpec) -> None:
        self.s = s

    def needs_expected(self) -> bool:
        """With no value: of its own, it compares with the case's expected value, which must exist."""
        return self.s.value is None

    def score(self, text: str, expected: Any) -> Score:
        want = self.s.value if self.s.value is not None else expected
        if want is None:
            return Score(False, 0.0, "no expected value to compare with")
        got = _normalise(final_answer(text), self.s.ignore_case, self.s.strip_punctuation)
        for w in _as_list(want):
            if got == _normalise(w, self.s.ignore_case, self.s.strip_punctuation):
                return Score(True, 1.0, f"equals {w!r}")
        return Score(False, 0.0, f"expected {want!r}, got {got[:80]!r}")


class ContainsSpec(ScorerSpec):
    value: Any = None
    mode: Literal["all", "any"] = "all"
    ignore_case: bool = True
    negate: bool = False


class _Contains(TextScorer):
    kind = "contains"
    Spec = ContainsSpec

    def __init__(self, s: ContainsSpec) -> None:
        self.s = s

    def needs_expected(self) -> bool:
        """With no value: of its own, it compares with the case's expected value, which must exist."""
        return self.s.value is None

    def score(self, text: str, expected: Any) -> Score:
        want = self.s.value if self.s.value is not None else expected
        if want is None:
            return Score(False, 0.0, "no value to look for")
        hay = _normalise(final_answer(text), self.s.ignore_case, False)
        needles = _as_list(want)
        found = [n for n in needles if _normalise(n, self.s.ignore_case, False) in hay]
        hit = bool(found) if self.s.mode == "any" else len(found) == len(needles)
        if self.s.negate:
            return Score(not found, 0.0 if found else 1.0, f"must not contain {found}" if found else "none present")
        missing = [n for n in needles if n not in found]
        return Score(hit, len(found) / len(needles), f"found {found}" if hit else f"missing {missing}")


def compile_linear(pattern: str, ignore_case: bool = False) -> Any:
    """A pattern for RE2 (google-re2): matching takes linear time in the text, so no pattern from a
    suite, like ``(a+)+$``, can hang a run on a hostile answer. RE2 lacks backreferences and
    lookaround, and its ``\\w \\d \\s \\b`` are ASCII (use ``\\p{L}``/``\\p{N}`` for other scripts)."""
    import re2

    try:
        return re2.compile(("(?i)" if ignore_case else "") + pattern)
    except re2.error as e:
        try:
            re.compile(pattern)
        except re.error:
            raise ValueError(f"invalid regular expression: {e}") from None
        raise ValueError(f"the pattern uses a feature RE2 does not have ({e}): weighbridge matches with RE2, "
                         "a linear-time engine, so no pattern can hang a run; rewrite it without a "
                         "backreference or lookahead/lookbehind") from None


class RegexSpec(ScorerSpec):
    pattern: str
    ignore_case: bool = False
    negate: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        compile_linear(v)
        return v


class _Regex(TextScorer):
    kind = "regex"
    Spec = RegexSpec

    def __init__(self, s: RegexSpec) -> None:
        self.s = s
        self.rx = compile_linear(s.pattern, s.ignore_case)

    def score(self, text: str, expected: Any) -> Score:
        m = self.rx.search(final_answer(text))
        ok = (m is None) if self.s.negate else (m is not None)
        reason = f"matched {m.group(0)[:60]!r}" if m else f"no match for /{self.s.pattern}/"
        return Score(ok, 1.0 if ok else 0.0, reason)


class NumericSpec(ScorerSpec):
    value: float | None = None
    abs_tol: float = Field(1e-6, ge=0)
    rel_tol: float = Field(0.0, ge=0)
    pick: Literal["last", "first", "any"] = "last"


def numbers_in(text: str) -> list[float]:
    out = []
    for tok in _NUMBER.findall(text):
        try:
            out.append(float(tok.replace(",", "")))
        except ValueError:
            continue
    return out


class _Numeric(TextScorer):
    kind = "numeric"
    Spec = NumericSpec

    def __init__(self, s: NumericSpec) -> None:
        self.s = s

    def needs_expected(self) -> bool:
        """With no value: of its own, it compares with the case's expected value, which must exist."""
        return self.s.value is None

    def score(self, text: str, expected: Any) -> Score:
        want = self.s.value if self.s.value is not None else expected
        try:
            want_f = float(str(want).replace(",", ""))
        except (TypeError, ValueError):
            return Score(False, 0.0, f"expected value {want!r} is not a number")
        nums = numbers_in(final_answer(text))
        if not nums:
            return Score(False, 0.0, "no number in the answer")
        pool = nums if self.s.pick == "any" else [nums[-1] if self.s.pick == "last" else nums[0]]
        for n in pool:
            if math.isclose(n, want_f, abs_tol=self.s.abs_tol, rel_tol=self.s.rel_tol):
                return Score(True, 1.0, f"{n:g} ≈ {want_f:g}")
        return Score(False, 0.0, f"got {pool[-1]:g}, expected {want_f:g}")


