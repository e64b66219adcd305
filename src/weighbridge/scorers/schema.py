"""JSON answers: the reply must parse, validate against a JSON Schema, and carry the right fields."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from pydantic import Field, field_validator

from ..core.schemas import check_schema
from .base import Score, ScorerSpec, TextScorer, code_block, final_answer


NO_JSON = "no JSON value found in the answer"
SCHEMA_FAIL = "schema: "


def schema_valid(reason: str) -> bool:
    """Whether a json_schema score's answer parsed and validated (its fields may still be wrong)."""
    return not (reason.startswith(NO_JSON) or reason.startswith(SCHEMA_FAIL))


class JsonSchemaSpec(ScorerSpec):
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    fields: dict[str, Any] = Field(default_factory=dict, description="dotted path -> expected value")
    ignore_case: bool = True

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            try:
                check_schema(v)
            except jsonschema.SchemaError as e:
                raise ValueError(f"not a valid JSON Schema: {e.message}") from None
        return v


def extract_json(text: str) -> Any:
    """Parse the answer as JSON, tolerating a code fence or prose around one object or array."""
    body = code_block(final_answer(text), prefer=("json",))
    try:
        return json.loads(body)
    except ValueError:
        pass
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if starts:
        try:
            obj, _ = json.JSONDecoder().raw_decode(body[min(starts):])
            return obj
        except ValueError:
            pass
    raise ValueError(NO_JSON)


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(obj, list) and part.isdigit():
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            raise KeyError(dotted)
    return obj


def _equal(got: Any, want: Any, ignore_case: bool) -> bool:
    if isinstance(want, str) and isinstance(got, str) and ignore_case:
        return got.strip().casefold() == want.strip().casefold()
    if isinstance(want, (int, float)) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return abs(got - want) <= 1e-9 * max(1.0, abs(want))
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(_equal(g, w, ignore_case) for g, w in zip(got, want))
    return got == want


class _JsonSchema(TextScorer):
    kind = "json_schema"
    Spec = JsonSchemaSpec

    def __init__(self, s: JsonSchemaSpec) -> None:
        self.s = s
        self.validator = jsonschema.validators.validator_for(s.json_schema)(s.json_schema) if s.json_schema else None

    def score(self, text: str, expected: Any) -> Score:
        try:
            obj = extract_json(text)
        except ValueError as e:
            return Score(False, 0.0, str(e))
        if self.validator is not None:
            err = jsonschema.exceptions.best_match(self.validator.iter_errors(obj))
            if err is not None:
                where = "/".join(str(p) for p in err.absolute_path) or "(root)"
                return Score(False, 0.0, f"{SCHEMA_FAIL}{where}: {err.message[:120]}")
        want = dict(self.s.fields)
        if isinstance(expected, dict) and not want:
            want = expected
        wrong = []
        for path, value in want.items():
            try:
                got = _get(obj, path)
            except (KeyError, IndexError):
                wrong.append(f"{path} missing")
                continue
            if not _equal(got, value, self.s.ignore_case):
                wrong.append(f"{path}={got!r}, expected {value!r}")
        if wrong:
            return Score(False, 1 - len(wrong) / len(want), "; ".join(wrong)[:200])
        return Score(True, 1.0, "valid JSON" + (f", {len(want)} field(s) match" if want else ""))


