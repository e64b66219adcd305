"""Bad input gets a clear error naming file and line, in under a second, and no run is created.

Each case is a file a user (or an attacker who controls a shared suite) could hand weighbridge:
every one goes through the real CLI, must exit 2 with a one-line message, print no traceback and
leave no store behind.
"""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app
from weighbridge.core.errors import ConfigError
from weighbridge.suites import load_suite

from .conftest import write

runner = CliRunner()

MODEL = "models:\n  - name: a\n    backend: openai\n    base_url: http://127.0.0.1:9/v1\n    model: m\n"


def bake(tmp_path, config_path):
    t0 = time.monotonic()
    r = runner.invoke(app, ["bakeoff", "-c", str(config_path), "--store", str(tmp_path / "wb.db")])
    took = time.monotonic() - t0
    out = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    assert not (tmp_path / "wb.db").exists(), "no store, no run"
    assert took < 5, f"took {took:.1f}s"
    return out


def with_suite(tmp_path, name, content: str | bytes):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return write(tmp_path / "weighbridge.yaml", MODEL + f"suites: [{name}]\n")


def test_duplicate_keys_in_the_config_name_both_lines(tmp_path):
    cfg = write(tmp_path / "weighbridge.yaml", "models:\n  - name: a\n    backend: openai\n    base_url: http://x/v1\n"
                                               "    model: m\n    model: n\nsuites: [a.yaml]\nsuites: [b.yaml]\n")
    out = bake(tmp_path, cfg)
    assert f"{cfg}:6: field 'model': duplicate key 'model' (first at line 5" in out


def test_duplicate_top_level_key(tmp_path):
    cfg = write(tmp_path / "weighbridge.yaml", MODEL + "suites: [a.yaml]\nsuites: [b.yaml]\n")
    assert f"{cfg}:7: field 'suites': duplicate key 'suites' (first at line 6" in bake(tmp_path, cfg)


def test_a_directory_as_config(tmp_path):
    d = tmp_path / "conf"
    d.mkdir()
    assert f"{d}: is a directory, not a YAML file" in bake(tmp_path, d)


def test_a_directory_as_suite(tmp_path):
    (tmp_path / "cases").mkdir()
    cfg = write(tmp_path / "weighbridge.yaml", MODEL + "suites: [cases]\n")
    assert "is a directory, not a suite file" in bake(tmp_path, cfg)


def test_nul_byte_in_the_config(tmp_path):
    cfg = tmp_path / "weighbridge.yaml"
    cfg.write_bytes(MODEL.encode() + b"suites: [a\x00.yaml]\n")
    assert f"{cfg}:6: contains a NUL byte" in bake(tmp_path, cfg)


def test_latin1_csv_names_line_and_column(tmp_path):
    cfg = with_suite(tmp_path, "cases.csv", "id,prompt,expected\nq1,Caf\xe9?,yes\n".encode("latin-1"))
    assert f"{tmp_path / 'cases.csv'}:2: is not UTF-8 text: byte 0xe9 at column 7" in bake(tmp_path, cfg)


def test_binary_jsonl(tmp_path):
    cfg = with_suite(tmp_path, "cases.jsonl", b'{"id": "a", "prompt": "x", "expected": "y"}\n\x89PNG\r\n\x1a\n\xff\xfe')
    assert "cases.jsonl:2: is not UTF-8 text" in bake(tmp_path, cfg)


def test_duplicate_keys_in_jsonl(tmp_path):
    cfg = with_suite(tmp_path, "cases.jsonl", '{"id": "a", "prompt": "x", "expected": "y", "expected": "z"}\n')
    assert "cases.jsonl:1: duplicate key 'expected'" in bake(tmp_path, cfg)


def test_deep_list_in_yaml_and_jsonl(tmp_path):
    cfg = with_suite(tmp_path, "deep.yaml", "- id: a\n  prompt: x\n  expected: " + "[" * 20000 + "]" * 20000 + "\n")
    assert "deep.yaml:3:" in bake(tmp_path, cfg)
    cfg = with_suite(tmp_path, "deep2.yaml", "- id: a\n  prompt: x\n  expected: " + "[" * 200 + "]" * 200 + "\n")
    assert "deep2.yaml:3: nested deeper than 64 levels" in bake(tmp_path, cfg)
    cfg = with_suite(tmp_path, "deep.jsonl", '{"id": "a", "prompt": "x", "expected": ' + "[" * 20000 + "]" * 20000 + "}\n")
    assert "deep.jsonl:1: JSON nested deeper than 64 levels" in bake(tmp_path, cfg)


def test_alias_bomb_is_refused_in_under_a_second(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    cfg = write(tmp_path / "weighbridge.yaml", MODEL + "\n".join(lines) + "\nsuites: [a.yaml]\n")
    t0 = time.monotonic()
    out = bake(tmp_path, cfg)
    assert time.monotonic() - t0 < 1.0
    assert "aliases expand this document past 1,000,000 extra values" in out


def test_recursive_alias(tmp_path):
    cfg = write(tmp_path / "weighbridge.yaml", MODEL + "loop: &l [1, *l]\nsuites: [a.yaml]\n")
    assert "recursive alias" in bake(tmp_path, cfg)


def test_huge_yaml_is_refused_by_size_before_parsing(tmp_path):
    cfg = tmp_path / "weighbridge.yaml"
    with open(cfg, "w") as f:
        f.write(MODEL + "suites: [a.yaml]\nnotes: |\n")
        line = "  " + "x" * 1000 + "\n"
        for _ in range(17 * 1024):
            f.write(line)
    assert "the limit for a YAML file is 16.0 MB (put large suites in JSONL)" in bake(tmp_path, cfg)


def test_unterminated_csv_quote_names_the_record(tmp_path):
    cfg = with_suite(tmp_path, "cases.csv", 'id,prompt,expected\nq1,fine,yes\nq2,"never closed,yes\nq3,more,yes\n')
    assert "cases.csv:3: unterminated quoted field" in bake(tmp_path, cfg)


def test_csv_with_more_fields_than_columns(tmp_path):
    cfg = with_suite(tmp_path, "cases.csv", "id,prompt,expected\nq1,a,b,c\n")
    assert "cases.csv:2: 4 fields but the header has 3 columns" in bake(tmp_path, cfg)


def test_catastrophic_regex_cannot_hang_a_run():
    from weighbridge.scorers import build_scorer

    s = build_scorer({"type": "regex", "pattern": "(a+)+$"})
    t0 = time.monotonic()
    r = s.score("a" * 40 + "!", None)
    assert not r.passed and time.monotonic() - t0 < 0.5


def test_regex_features_re2_lacks_are_named_at_load_time(tmp_path):
    p = write(tmp_path / "s.yaml", "- id: a\n  prompt: x\n  scorers: [{type: regex, pattern: '(\\w)\\1'}]\n")
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    assert e.value.line == 3 and "RE2" in str(e.value) and "backreference" in str(e.value)
