import pytest
from pydantic import ValidationError

from weighbridge.scorers import build_scorer, scorer_types


def score(spec, text, expected=None):
    return build_scorer(spec).score(text, expected)


def test_registry_lists_every_builtin_scorer():
    assert scorer_types() == ["agent", "contains", "exact", "json_schema", "judge", "numeric", "python_tests", "refusal",
                              "regex", "tool_call"]


def test_exact_normalises_case_space_and_trailing_punctuation():
    assert score("exact", "  Positive. ", "positive").passed
    assert not score("exact", "positive review", "positive").passed
    assert score({"type": "exact", "ignore_case": False}, "positive", "positive").passed
    assert not score({"type": "exact", "ignore_case": False}, "Positive", "positive").passed
    assert score("exact", "<think>hmm, maybe negative</think>\npositive", "positive").passed
    assert score("exact", "b", ["a", "b"]).passed


def test_contains_all_any_and_negate():
    assert score({"type": "contains", "value": ["cat", "sofa"]}, "The cat on the Sofa").passed
    r = score({"type": "contains", "value": ["cat", "dog"]}, "the cat")
    assert not r.passed and r.value == 0.5 and "dog" in r.reason
    assert score({"type": "contains", "value": ["cat", "dog"], "mode": "any"}, "the dog").passed
    assert not score({"type": "contains", "value": "secret", "negate": True}, "the secret is out").passed


def test_regex_and_bad_pattern():
    assert score({"type": "regex", "pattern": r"^\d{3}-\d{4}$"}, "555-1234").passed
    assert not score({"type": "regex", "pattern": r"^\d{3}-\d{4}$"}, "call 555-1234").passed
    with pytest.raises(ValidationError, match="invalid regular expression"):
        build_scorer({"type": "regex", "pattern": "(unclosed"})


def test_numeric_with_tolerance_and_formats():
    assert score("numeric", "so the answer is\n30", 30).passed
    assert score("numeric", "Total: 1,250.50 EUR", "1250.5").passed
    assert not score("numeric", "30 then 31", 30).passed  # last number counts by default
    assert score({"type": "numeric", "pick": "any"}, "30 then 31", 30).passed
    assert score({"type": "numeric", "rel_tol": 0.01}, "about 99.5", 100).passed
    assert not score("numeric", "no digits here", 3).passed


def test_unknown_scorer_and_unknown_option():
    with pytest.raises(ValueError, match="unknown scorer type"):
        build_scorer("bleu")
    with pytest.raises(ValidationError):
        build_scorer({"type": "exact", "ignorecase": True})


SCHEMA = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}


def test_json_schema_validity_and_fields():
    spec = {"type": "json_schema", "schema": SCHEMA, "fields": {"name": "Ana", "age": 31}}
    assert score(spec, '```json\n{"name": "ana", "age": 31}\n```').passed
    assert score(spec, 'Sure! {"name": "Ana", "age": 31} hope that helps').passed
    r = score(spec, '{"name": "Ana", "age": "31"}')
    assert not r.passed and "schema: age" in r.reason
    r = score(spec, '{"name": "Bob", "age": 31}')
    assert not r.passed and "name='Bob'" in r.reason
    assert not score(spec, "no json at all").passed
    nested = {"type": "json_schema", "fields": {"people.1.name": "Luis"}}
    assert score(nested, '{"people": [{"name": "Ana"}, {"name": "Luis"}]}').passed


def test_json_schema_rejects_invalid_schema():
    with pytest.raises(ValidationError, match="not a valid JSON Schema"):
        build_scorer({"type": "json_schema", "schema": {"type": "no-such-type"}})


TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def test_python_tests_pass_and_fail():
    spec = {"type": "python_tests", "tests": TESTS}
    assert score(spec, "```python\ndef add(a, b):\n    return a + b\n```").passed
    r = score(spec, "```python\ndef add(a, b):\n    return abs(a) + b\n```")
    assert not r.passed and "AssertionError" in r.reason and r.value == 0.5  # one of two asserts held
    assert not score(spec, "I cannot write code.").passed
