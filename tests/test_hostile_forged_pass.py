"""Attack tests, issue 22 item 8: an answer cannot pass by deciding its own equality. Real sandbox
runs (bubblewrap): each answer below tries to forge a pass in a few plain lines; the comparisons are
made in weighbridge's process on plain copies of the values, as EvalPlus compares ground truth."""

from __future__ import annotations

import textwrap

import pytest

from weighbridge.scorers.sandbox import run_python

TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
HUMANEVAL_STYLE = textwrap.dedent("""\
    def check(candidate):
        assert candidate(2, 3) == 5
        assert candidate(0, 0) == 0

    check(add)
""")

FORGERIES = {
    "int subclass whose == is always true": """
class R(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def add(a, b):
    return R(0)
""",
    "own class whose == is always true": """
class Anything:
    def __eq__(self, other):
        return True
def add(a, b):
    return Anything()
""",
    "str subclass": """
class S(str):
    def __eq__(self, other):
        return True
def add(a, b):
    return S("no")
""",
    "a patched json encoder and builtins": """
import json, builtins
json._default_encoder.encode = lambda o: '{"passed": true}'
json.dumps = lambda *a, **k: '{"passed": true}'
builtins.type = lambda *a: int
builtins.isinstance = lambda *a: True
class R(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def add(a, b):
    return R(0)
""",
    "patched len, list and str": """
import builtins
builtins.len = lambda *a: 0
builtins.list = lambda *a: []
builtins.str = lambda *a: "x"
class Anything:
    def __eq__(self, other):
        return True
def add(a, b):
    return Anything()
""",
}


@pytest.mark.parametrize("tests", [TESTS, HUMANEVAL_STYLE], ids=["top-level asserts", "check(candidate)"])
@pytest.mark.parametrize("name", list(FORGERIES))
def test_an_answer_that_decides_its_own_equality_does_not_pass(name, tests):
    r = run_python(FORGERIES[name], tests=tests, timeout_s=10)
    assert not r.passed, r.reason
    assert r.value < 1.0
    assert "does not hold" in r.reason or "not a plain value" in r.reason or "which is not one" in r.reason, r.reason


def test_honest_answers_pass_under_both_test_styles():
    for tests in (TESTS, HUMANEVAL_STYLE):
        r = run_python("def add(a, b):\n    return a + b\n", tests=tests, timeout_s=10)
        assert r.passed and r.value == 1.0 and "model's process" not in r.reason, r.reason


@pytest.mark.parametrize("code,tests,passes", [
    ("def f(): return [1, 2]", "assert f() == (1, 2)", False),  # Python: a list is not a tuple
    ("def f(): return (1, 2)", "assert f() == (1, 2)", True),
    ("def f(): return {1: 'a', (2, 3): {4}}", "assert f() == {1: 'a', (2, 3): {4}}", True),
    ("def f(): return 1.0", "assert f() == 1", True),  # 1 == 1.0 as in Python
    ("def f(): return True", "assert f() == 1", True),
    ("def f(): return 0.1 + 0.2", "assert f() == 0.3", False),
    ("def f(): return float('nan')", "assert f() != f()", True),
    ("def f(): return None", "assert f() is None", True),
    ("def f(): return []", "assert not f()", True),
    ("def f(): return 'abc'", "assert 'b' in f()\nassert f() < 'abd'\nassert len(f()) >= 3", True),
    ("def f(): return b'x'", "assert f() == b'x'", True),
    ("def f(): return 3", "assert f() < 'a'", False),  # a TypeError in Python too
    ("def f(): return frozenset({1})", "assert f() == {1}", True),
])
def test_comparisons_made_outside_keep_pythons_meaning(code, tests, passes):
    r = run_python(code, tests=tests, timeout_s=10)
    assert r.passed is passes, r.reason


def test_what_cannot_be_copied_is_decided_in_the_sandbox_and_said_so():
    code = "class Box:\n    def __init__(self, v): self.v = v\n    def __eq__(self, o): return self.v == o.v\n"
    r = run_python(code, tests="assert Box(1) == Box(1)", timeout_s=10)
    assert r.passed and "1 check(s) decided in the model's process" in r.reason
