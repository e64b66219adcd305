"""Python code answers: the model's code runs against the case's asserts inside the sandbox.

The sandbox mode is the run's (``sandbox:`` in the config, ``bubblewrap`` unless it says
``unsafe-local``); the engine sets ``mode`` on each scorer it builds, so one case file cannot
switch isolation off for itself."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Score, ScorerSpec, ThreadedTextScorer, code_block, final_answer
from .sandbox import run_python


class PythonTestsSpec(ScorerSpec):
    tests: str = Field(min_length=1, description="Python source with asserts, run after the model's code")
    setup: str = ""
    timeout_s: float = Field(10.0, gt=0, le=300)
    memory_mb: int = Field(512, ge=64, le=16384)


class _PythonTests(ThreadedTextScorer):
    kind = "python_tests"
    Spec = PythonTestsSpec

    def __init__(self, s: PythonTestsSpec) -> None:
        self.s = s
        self.mode = "bubblewrap"

    def score(self, text: str, expected: Any) -> Score:
        code = code_block(final_answer(text), prefer=("python", "py", "python3"))
        result = run_python(code, tests=self.s.tests, setup=self.s.setup, timeout_s=self.s.timeout_s,
                            memory_mb=self.s.memory_mb, mode=self.mode)
        return Score(result.passed, result.value, result.reason[:300])


