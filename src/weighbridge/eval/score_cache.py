"""Scores cached with the answers they judge: a re-run whose answers all come from the response
cache need not score them again (re-running model code in the sandbox, asking a judge).

A score is reused only when everything it depends on is unchanged: the answer (its text, thinking,
tool calls, finish reason, a recorded agent episode), the case as the suite defines it (input,
expected value, scorers and their settings), the scorers' code (a hash over the source of the
built-in scorers and of what they call, and the name and version of any plugin scorer's
distribution), the sandbox mode, and the judges' identities for a judged case. A judge call that
failed is never cached (the next call may answer). A sandbox time limit is: an answer that loops
forever times out every time, and scoring it again costs the whole limit - but the re-run counts the
reused time-outs and says so, since a slow answer on a busy machine may finish on a quiet one.
``rescore`` never reads this cache: it scores again by definition.
"""

from __future__ import annotations

import functools
import hashlib
import math
from importlib import metadata
from pathlib import Path
from typing import Any

from ..core.hashing import stable_hash
from ..core.plugins import SCORERS, registered
from ..core.types import Generation, Score
from ..suites import Case

# reasons that describe the run, not the answer: scoring the same answer again may decide otherwise
_UNSTABLE = ("judge call failed", "judge reply is not a valid verdict")
TIMED_OUT = "timed out after"  # a sandbox time limit: cached, and counted when reused
# what the built-in scorers run besides their own package: the reasoning split, the harness, the sandbox
_ALSO = ("core/reasoning.py", "eval/judging.py", "eval/thinking.py", "core/jsondiff.py")


@functools.cache
def scorer_code_version() -> str:
    """One hash over the code that decides a score: the scorers package's source files, the modules
    they call, and each plugin scorer's distribution and version (its source is not ours to read)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted((root / "scorers").rglob("*.py")) + [root / p for p in _ALSO]:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name, ep in sorted(registered(SCORERS).items()):
        if ep.value.startswith("weighbridge."):
            continue
        dist = ep.dist
        h.update(f"{name}={ep.value}@{dist.name if dist else '?'}=={dist.version if dist else '?'}".encode())
    try:
        h.update(metadata.version("weighbridge").encode())
    except metadata.PackageNotFoundError:
        pass
    return h.hexdigest()


def _answer(gen: Generation) -> dict[str, Any]:
    """What a scorer can read of an answer (never its timings)."""
    raw = gen.raw or {}
    return {"text": gen.text, "reasoning": gen.reasoning, "tool_calls": gen.tool_calls,
            "finish_reason": gen.finish_reason, "censored": raw.get("censored"),
            "agent": stable_hash(raw["agent"]) if raw.get("agent") is not None else None}


def case_fingerprint(case: Case, *, sandbox: str, judges: dict[str, str]) -> str:
    """Everything of a score's key that is not the answer: the case, the scorers' code, the sandbox
    and (for a judged case) the judges - computed once per case, not once per answer."""
    uses_judge = any((sp if isinstance(sp, str) else sp.get("type")) == "judge" for sp in case.scorers)
    return stable_hash({"case": case.model_dump(mode="json"), "code": scorer_code_version(), "sandbox": sandbox,
                        "judges": judges if uses_judge else None})


def score_key(case_print: str, gen: Generation) -> str:
    """The cache key of this answer's scores for the case ``case_print`` stands for."""
    return stable_hash({"answer": _answer(gen), "case": case_print})


def cacheable(scores: list[tuple[str, Score]]) -> bool:
    """Scores worth keeping: some were given, and none says the run decided rather than the answer."""
    return bool(scores) and not any(s.reason.startswith(_UNSTABLE) or not math.isfinite(s.value) for _, s in scores)


def timed_out(scores: list[tuple[str, Score]]) -> bool:
    """Did the sandbox's time limit decide one of these scores?"""
    return any(s.reason.startswith(TIMED_OUT) for _, s in scores)
