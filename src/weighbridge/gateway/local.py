"""Upstreams that are model files on this machine: ``serve`` starts llama.cpp's own OpenAI-compatible
server for each (on a free loopback port) and stops it on exit, so a plan can route to the bundled
models with nothing else running."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..backends.bundled import resolve_bundled
from ..bench.target import local_server
from .plan import Plan


def start_local_upstreams(plan: Plan, stack: contextlib.ExitStack, threads: int | None = None) -> list[str]:
    """Fill in the base_url of every bundled/path upstream; one server per distinct file. Returns what started."""
    started: dict[str, str] = {}
    for route in plan.routes.values():
        for up in [*route.all_upstreams(), *plan.judges.values()]:
            if up.base_url is not None:
                continue
            gguf = resolve_bundled(up.bundled, up.name) if up.bundled else Path(plan.resolve(str(up.path)))
            key = str(gguf)
            if key not in started:
                started[key] = stack.enter_context(local_server(gguf, alias=str(up.model), threads=threads))
            up.base_url = started[key]
    return [f"{Path(k).name} at {v}" for k, v in started.items()]
