"""An echo backend (answers with the last user message, upper-cased, `times` times) and a
word_count scorer (passes when the answer has at least `at_least` words): what a plugin writes."""

from __future__ import annotations

import time
from typing import Any

from weighbridge.backends.base import Generation, Request, Timings
from weighbridge.scorers import Score
from weighbridge.scorers.base import ScorerSpec, TextScorer


class EchoBackend:
    def __init__(self, spec: Any, base_dir: str = ".", expected_sha256: str | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.times = int(spec.options.get("times", 1))

    def identity(self) -> dict[str, Any]:
        return {"backend": "echo", "times": self.times}

    def manifest(self) -> dict[str, Any]:
        return {"backend": "echo", "times": self.times}

    async def preflight(self) -> None:
        return None

    async def generate(self, request: Request) -> Generation:
        timings = Timings(sent=time.perf_counter_ns())
        last = next((m["content"] for m in reversed(request.messages or []) if m["role"] == "user"), request.prompt or "")
        text = " ".join([last.upper()] * self.times)
        timings.mark_token()
        timings.done = time.perf_counter_ns()
        return Generation.from_timings(timings, text=text, finish_reason="stop", prompt_tokens=len(last.split()),
                                       completion_tokens=len(text.split()), token_source="engine")

    async def aclose(self) -> None:
        return None


class WordCountSpec(ScorerSpec):
    at_least: int = 1


class WordCount(TextScorer):
    kind = "word_count"
    Spec = WordCountSpec

    def __init__(self, settings: WordCountSpec) -> None:
        self.at_least = settings.at_least

    def score(self, text: str, expected: Any) -> Score:
        n = len(text.split())
        return Score(n >= self.at_least, min(1.0, n / self.at_least), f"{n} words (at least {self.at_least})")
