"""A bakeoff's progress, wherever its output goes: Rich bars on a terminal, plain lines elsewhere.

Off a terminal (``make demo > log``, CI, a redirected run) a bar draws nothing, and a long run
looked dead until its final table. There, each model gets one line when it starts, one at most
every ``every_s`` seconds while it runs, and one when it is done: jobs, passes, errors, rate, ETA.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@dataclass
class _Counts:
    total: int
    start_done: int
    done: int = 0
    passed: int = 0
    errors: int = 0
    started: float = field(default_factory=lambda: time.monotonic())
    first_done: float | None = None  # when this invocation finished its first job for the model
    last_line: float = 0.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class BakeoffProgress:
    """``update`` is the engine's progress callback; use as a context manager around the run."""

    def __init__(self, console: Console, *, every_s: float = 15.0, bars: bool | None = None) -> None:
        self.console = console
        self.every_s = every_s
        self.bars = bars if bars is not None else (console.is_terminal or os.environ.get("WEIGHBRIDGE_PROGRESS") == "1")
        self.counts: dict[str, _Counts] = {}
        self._tasks: dict[str, Any] = {}
        self._rich = Progress(TextColumn("[bold]{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("pass {task.fields[passed]} · errors {task.fields[errors]}"),
                              TimeElapsedColumn(), console=console, transient=False, disable=not self.bars)

    def __enter__(self) -> "BakeoffProgress":
        self._rich.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._rich.__exit__(*exc)

    def update(self, model: str, done: int, total: int, passed: bool, errored: bool = False,
               already_passed: int = 0) -> None:
        """``already_passed``: on a model's first call, the passes among the jobs a resumed run had done."""
        c = self.counts.get(model)
        first = c is None
        if c is None:
            c = self.counts[model] = _Counts(total=total, start_done=done, passed=already_passed)
            self._tasks[model] = self._rich.add_task(model, total=total, passed=0, errors=0)
        else:
            c.passed += int(passed)
            c.errors += int(errored)
            if c.first_done is None:
                c.first_done = time.monotonic()
        c.done = done
        self._rich.update(self._tasks[model], completed=done, passed=c.passed, errors=c.errors)
        if self.bars:
            return
        now = time.monotonic()
        if first or done >= total or now - c.last_line >= self.every_s:
            c.last_line = now
            self.console.print(self.line(model), highlight=False, soft_wrap=True)

    def line(self, model: str) -> str:
        c = self.counts[model]
        if c.done >= c.total and c.done > c.start_done:
            state = "done"
        elif c.done == c.start_done:
            state = "started" + (f" ({c.start_done} already done)" if c.start_done else "")
        else:
            state = "running"
        now = time.monotonic()
        elapsed = now - c.started
        fresh = c.done - c.start_done
        # the rate counts from the first finished job: a model waiting for its lane is not slow
        span = now - c.first_done if c.first_done is not None else 0.0
        rate = (fresh - 1) / span if fresh > 1 and span > 0 else 0.0
        eta = f" · ETA {_duration((c.total - c.done) / rate)}" if rate and c.done < c.total else ""
        speed = f" · {rate:.2f} jobs/s" if rate else ""
        return (f"progress {model}: {state} {c.done}/{c.total} jobs · pass {c.passed} · errors {c.errors}"
                f"{speed}{eta} · {_duration(elapsed)}")
