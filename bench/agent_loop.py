"""What the agent loop costs apart from the model and the environment, and what one sandboxed
environment call costs.

Prints:
1. loop overhead per step: an instant model that calls one tool per step against an instant
   in-process environment (no sandbox), over episodes of the default episode limit's size (the
   conversation grows with each step, and every step sends all of it), wall time over steps
   (goal < 1 ms);
2. one call to a sandboxed environment (bubblewrap, the host process already started): median and
   p95 over many calls (goal < 5 ms median);
3. starting a sandboxed environment (once per episode).

Usage: python bench/agent_loop.py [--episodes 40] [--steps 59] [--calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

from weighbridge.backends.toolcalls import make_call
from weighbridge.core.types import Generation, Timings
from weighbridge.eval.agent.loop import Limits, run_episode
from weighbridge.eval.agent.sandboxed import SandboxedEnvironment, ToolResult

ENV = '''
class Counter:
    """Counts."""

    def load_state(self, state):
        self.n = state["n"]

    def add(self, k: int) -> int:
        """Add k."""
        self.n += k
        return self.n
'''
TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add k.",
                                            "parameters": {"type": "object", "properties": {"k": {"type": "integer"}},
                                                           "required": ["k"]}}}]


class InstantModel:
    """Calls ``add`` once per step until ``steps`` steps, then answers."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    async def generate(self, request):
        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        self.left -= 1
        if self.left < 0:
            return Generation.from_timings(t, text="done", finish_reason="stop", prompt_tokens=1, completion_tokens=1,
                                           token_source="engine")
        return Generation.from_timings(t, text="", finish_reason="tool_calls", prompt_tokens=1, completion_tokens=1,
                                       token_source="engine", tool_calls=[make_call("c", "add", '{"k": 1}')])


class InstantEnv:
    tools = TOOLS

    def __init__(self) -> None:
        self.n = 0

    def call(self, name, arguments):
        self.n += arguments["k"]
        return ToolResult(True, result=self.n)

    def state(self):
        return {"n": self.n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=Limits().steps_per_episode - 1)
    ap.add_argument("--calls", type=int, default=500)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    limits = Limits(steps_per_turn=args.steps + 1, steps_per_episode=args.steps + 1, tokens=10_000_000, wall_s=3600)
    steps, took = 0, 0.0
    for _ in range(args.episodes):
        t = time.perf_counter()
        ep = asyncio.run(run_episode(InstantModel(args.steps), InstantEnv(), ["go"], limits=limits))
        took += time.perf_counter() - t
        steps += len(ep.steps)
    print(f"1. loop overhead per step (instant model, in-process environment): {took / steps * 1000:.3f} ms "
          f"({args.episodes} episodes of {len(ep.steps)} steps, {ep.termination}; goal < 1 ms)")
    t = time.perf_counter()
    with SandboxedEnvironment(ENV, "Counter", {"n": 0}) as env:
        started = time.perf_counter() - t
        times = []
        for _ in range(args.calls):
            c = time.perf_counter()
            env.call("add", {"k": 1})
            times.append((time.perf_counter() - c) * 1000)
    times.sort()
    print(f"2. one sandboxed environment call: median {statistics.median(times):.3f} ms, "
          f"p95 {times[int(len(times) * 0.95) - 1]:.3f} ms ({args.calls} calls; goal < 5 ms median)")
    print(f"3. starting a sandboxed environment: {started * 1000:.0f} ms (once per episode)")


if __name__ == "__main__":
    main()
