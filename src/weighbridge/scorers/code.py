"""Python code answers: the model's code runs against the case's asserts inside the sandbox."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Score, ScorerSpec, code_block, final_answer, register
from .sandbox import run_python


class PythonTestsSpec(ScorerSpec):
    tests: str = Field(min_length=1, description="Python source with asserts, run after the model's code")
    setup: str = ""
    timeout_s: float = Field(10.0, gt=0, le=300)
    memory_mb: int = Field(512, ge=64, le=16384)


class _PythonTests:
    kind = "python_tests"

    def __init__(self, s: PythonTestsSpec) -> None:
        self.s = s

    def score(self, text: str, expected: Any) -> Score:
        code = code_block(final_answer(text), prefer=("python", "py", "python3"))
        source = "\n\n".join(part for part in (self.s.setup, code, "# --- tests ---", self.s.tests) if part)
        result = run_python(source, timeout_s=self.s.timeout_s, memory_mb=self.s.memory_mb)
        return Score(result.passed, 1.0 if result.passed else 0.0, result.reason[:200])


register("python_tests", PythonTestsSpec)(_PythonTests)
