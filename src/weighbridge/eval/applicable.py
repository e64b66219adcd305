"""Which cases a model cannot take, and why: not run (and shown as such) rather than failed, errored
or truncated - tool cases for a model without tool support, agent cases for a completion-mode model
or where no sandbox can run environments, code cases without a sandbox, prompts longer than its
context window leaves room for (counted with its own tokenizer where it is a local GGUF)."""

from __future__ import annotations

from typing import Any

from ..backends import Backend
from ..core.config import ModelSpec
from ..suites import Case

NO_SANDBOX = ("no sandbox to run model code in: apt-get install bubblewrap python3-seccomp, or set "
              "sandbox: unsafe-local")
COMPLETION_AGENT = "an agent loop needs chat turns and tools; this model is in completion mode"


def scored_by(case: Case, kind: str) -> bool:
    """Does one of the case's scorers have this type (a scorer is a name or a mapping with type:)?"""
    return any((sp if isinstance(sp, str) else sp.get("type")) == kind for sp in case.scorers)


def not_applicable(cases: list[Case], specs: dict[str, ModelSpec], backends: dict[str, Backend], *,
                   no_sandbox: bool) -> dict[str, dict[str, Any]]:
    """Per model: the reason (all of them in words), the case ids, and the ids by reason."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():
        backend = backends[name]
        reasons: dict[str, list[str]] = {}
        tool_why = backend.tool_support()
        window = backend.context_window()
        for c in cases:
            why = None
            if no_sandbox and (scored_by(c, "python_tests") or c.is_agent):
                why = NO_SANDBOX
            elif c.is_agent and spec.mode == "completion":
                why = COMPLETION_AGENT
            elif (c.is_agent or c.tools) and tool_why:
                why = tool_why
            elif c.context_tokens is not None and window:
                counted = backend.count_tokens(c.rendered_messages()[0]["content"])
                tokens = counted if counted is not None else c.context_tokens
                if tokens + spec.params.max_tokens > window:
                    why = f"the prompt and reply do not fit its context window {window:,} (n_ctx)"
            if why:
                reasons.setdefault(why, []).append(c.id)
        if reasons:
            cases_out = [i for ids in reasons.values() for i in ids]
            out[name] = {"reason": "; ".join(reasons), "cases": cases_out, "reasons": reasons}
    return out
