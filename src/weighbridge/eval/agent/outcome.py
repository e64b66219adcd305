"""Scoring an episode by what it left behind: the environment's end state against the state the gold
calls reach when they are replayed in a fresh environment (tau-bench compares the database the same
way; BFCL compares state after every turn). States are compared as canonical JSON; ``subset`` mode
lets the episode's state hold more than the gold one (ids, timestamps, notes a model may add). The
first path that differs is the reason.
"""

from __future__ import annotations

from typing import Any

from ...core.jsondiff import canonical, first_difference, first_divergence
from .sandboxed import SandboxedEnvironment

__all__ = ["canonical", "first_difference", "first_divergence", "replay", "replay_turns"]


def replay(source: str, class_name: str, initial_state: dict[str, Any], gold: list[list[dict[str, Any]]],
           *, mode: str = "bubblewrap") -> Any:
    """The state the gold calls reach (see ``replay_turns``)."""
    states = replay_turns(source, class_name, initial_state, gold, mode=mode)
    return states[-1] if states else None


def replay_turns(source: str, class_name: str, initial_state: dict[str, Any], gold: list[list[dict[str, Any]]],
                 *, mode: str = "bubblewrap", libraries: dict[str, str] | None = None,
                 results: list[list[Any]] | None = None) -> list[Any]:
    """The state after each turn's gold calls, replayed in a fresh sandboxed environment. A gold call
    that fails (unless marked ``fails``) is a broken task, not a model's failure: it raises ValueError
    naming the call. ``results``, when given, receives each turn's call results."""
    states = []
    with SandboxedEnvironment(source, class_name, initial_state, mode=mode, libraries=libraries) as env:
        for turn, calls in enumerate(gold):
            if results is not None:
                results.append([])
            for call in calls:
                result = env.call(call["name"], call.get("arguments") or {})
                if results is not None:
                    results[-1].append(result.result if result.ok else {"error": result.error})
                if not result.ok and not call.get("fails"):
                    raise ValueError(f"gold call {call['name']} of turn {turn + 1} failed: {result.error}")
                if result.ok and call.get("fails"):
                    raise ValueError(f"gold call {call['name']} of turn {turn + 1} is marked fails: true but succeeded")
            states.append(canonical(env.state()))
    return states
