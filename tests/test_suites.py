from pathlib import Path

import pytest
import yaml

from weighbridge.core.errors import ConfigError
from weighbridge.scorers import build_scorer
from weighbridge.suites import load_suite, load_suites

from .conftest import write

REFERENCES = Path(__file__).parent / "data" / "starter_references.yaml"


def test_yaml_suite_with_defaults_and_vars(tmp_path):
    p = write(tmp_path / "s.yaml", """
name: mine
defaults: {tags: [support], system: Be brief.}
cases:
  - id: greet
    prompt: Say hello to {{name}}.
    vars: {name: Ada}
    scorers: [{type: contains, value: Ada}]
  - id: chat
    messages:
      - {role: user, content: "2+2?"}
    expected: "4"
""")
    s = load_suite(p)
    assert s.name == "mine" and [c.id for c in s.cases] == ["greet", "chat"]
    assert s.cases[0].rendered_messages() == [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Say hello to Ada."}]
    assert s.cases[1].scorers == ["exact"] and s.cases[1].workload == "support"


def test_jsonl_suite_and_error_line(tmp_path):
    good = write(tmp_path / "a.jsonl", '{"id": "x", "prompt": "hi", "expected": "hi"}\n\n'
                                       '{"id": "y", "prompt": "2+2", "expected": 4, "scorers": ["numeric"], "tags": ["math"]}\n')
    s = load_suite(good)
    assert [c.workload for c in s.cases] == ["general", "math"]
    bad = write(tmp_path / "b.jsonl", '{"id": "x", "prompt": "hi", "expected": "hi"}\n{"id": "y", "prompt": }\n')
    with pytest.raises(ConfigError) as e:
        load_suite(bad)
    assert e.value.line == 2 and "invalid JSON" in str(e.value)


def test_jsonl_bad_scorer_names_line_and_field(tmp_path):
    bad = write(tmp_path / "b.jsonl", '{"id": "x", "prompt": "hi", "expected": "hi"}\n'
                                      '{"id": "y", "prompt": "hi", "scorers": [{"type": "regex", "pattern": "("}]}\n')
    with pytest.raises(ConfigError) as e:
        load_suite(bad)
    assert e.value.line == 2 and e.value.field == "scorers.0" and "invalid regular expression" in str(e.value)


def test_csv_suite_vars_and_scorer_column(tmp_path):
    p = write(tmp_path / "c.csv", 'id,prompt,expected,scorer,tags,city\n'
                                  'q1,Capital of {{city}}?,Paris,contains,geo;easy,France\n'
                                  'q2,1+1?,2,numeric,math,\n')
    s = load_suite(p)
    assert s.cases[0].rendered_messages()[0]["content"] == "Capital of France?"
    assert s.cases[0].tags == ["geo", "easy"] and s.cases[1].scorers == ["numeric"]


def test_csv_bad_scorer_json_names_line(tmp_path):
    p = write(tmp_path / "c.csv", 'id,prompt,expected,scorer\nq1,hi,hi,exact\nq2,hi,hi,"{""type"": "\n')
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    assert e.value.line == 3 and e.value.field == "scorer"


def test_yaml_errors_name_line_and_field(tmp_path):
    p = write(tmp_path / "s.yaml", "cases:\n  - id: a\n    prompt: hi\n    expected: x\n"
                                   "  - id: b\n    prompt: hi\n    scorers: [{type: nope}]\n")
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    assert e.value.line == 7 and e.value.field == "cases.1.scorers.0" and "unknown scorer type 'nope'" in str(e.value)


def test_missing_template_var_is_an_error(tmp_path):
    p = write(tmp_path / "s.yaml", "- id: a\n  prompt: Hello {{who}}\n  expected: x\n")
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    assert "{{who}}" in str(e.value) and e.value.line == 1


def test_case_needs_something_to_check(tmp_path):
    p = write(tmp_path / "s.yaml", "- id: a\n  prompt: hi\n")
    with pytest.raises(ConfigError, match="needs 'scorers' or an 'expected'"):
        load_suite(p)


def test_duplicate_ids_across_suites(tmp_path):
    a = write(tmp_path / "a.yaml", "- {id: same, prompt: hi, expected: x}\n")
    b = write(tmp_path / "b.yaml", "- {id: same, prompt: ho, expected: y}\n")
    with pytest.raises(ConfigError, match="appears in both"):
        load_suites([str(a), str(b)])


def test_unknown_builtin_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no built-in suite 'nope'"):
        load_suite("builtin:nope")
    with pytest.raises(ConfigError, match="suite file not found"):
        load_suite("missing.yaml", tmp_path)


def test_starter_suite_covers_the_workload_classes():
    s = load_suite("builtin:starter")
    assert len(s.cases) >= 40
    counts: dict[str, int] = {}
    for c in s.cases:
        counts[c.workload] = counts.get(c.workload, 0) + 1
    assert set(counts) == {"code", "math", "extraction", "classification", "summarisation", "bilingual"}
    assert min(counts.values()) >= 6
    zh = [c for c in s.cases if c.workload == "bilingual"]
    def has_chinese(case) -> bool:
        text = str(case.rendered_messages()) + str(case.scorers) + str(case.expected)
        return any("\u4e00" <= ch <= "\u9fff" for ch in text)
    assert all(has_chinese(c) for c in zh)


def test_every_starter_case_is_answerable_and_checkable():
    """A correct reference answer passes each case's scorers, and a wrong one fails them:
    the checks are neither impossible nor vacuous."""
    refs = yaml.safe_load(REFERENCES.read_text(encoding="utf-8"))
    suite = load_suite("builtin:starter")
    assert set(refs) == {c.id for c in suite.cases}
    for case in suite.cases:
        scorers = [build_scorer(s) for s in case.scorers]
        results = [s.score(refs[case.id], case.expected) for s in scorers]
        assert all(r.passed for r in results), (case.id, [r.reason for r in results])
        wrong = [s.score("I don't know.", case.expected) for s in scorers]
        assert not all(r.passed for r in wrong), case.id


def test_a_suite_reference_can_take_a_slice_of_its_cases(tmp_path):
    every_fourth = load_suite("builtin:tools[::4]")
    assert len(every_fourth.cases) == 12 and every_fourth.name == "tools[::4]"
    assert [c.id for c in load_suite("builtin:starter[2:4]").cases] == [c.id for c in load_suite("builtin:starter").cases[2:4]]
    with pytest.raises(ConfigError, match="step cannot be 0"):
        load_suite("builtin:tools[::0]")
    with pytest.raises(ConfigError, match="selects no case"):
        load_suite("builtin:tools[100:]")


def test_a_schema_is_checked_once_when_valid_and_every_time_when_not(monkeypatch):
    import jsonschema

    from weighbridge.core import schemas

    checks = []
    real = jsonschema.Draft202012Validator.check_schema
    monkeypatch.setattr(jsonschema.Draft202012Validator, "check_schema",
                        classmethod(lambda cls, s: (checks.append(1), real(s))[1]))
    schemas._VALID.clear()
    good = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}}
    reordered = {"properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "type": "object",
                 "$schema": "https://json-schema.org/draft/2020-12/schema"}
    assert schemas.check_schema(good) is schemas.check_schema(reordered) is jsonschema.Draft202012Validator
    assert len(checks) == 1
    bad = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "no-such-type"}
    for _ in range(2):
        with pytest.raises(jsonschema.SchemaError):
            schemas.check_schema(bad)
    assert len(checks) == 3
