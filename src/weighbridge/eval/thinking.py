"""Each answer's thinking taken out of its text before it is stored, counted, and the answer censored
when the thinking was cut off (``core.reasoning`` tells thinking from answer).

Done once, where the engine gets an answer, so every backend is treated alike and what the store,
the cache and the scorers hold is already separated: ``text`` is the answer, ``reasoning`` the
thinking, and ``raw["thinking"]`` says how they were told apart and how many tokens the thinking took
(the server's ``reasoning_tokens`` when it reports them, else the model's tokenizer, else unknown).
"""

from __future__ import annotations

from typing import Any, Callable

from ..core.reasoning import split_reasoning
from ..core.types import Generation


def separate_thinking(gen: Generation, *, max_tokens: int, tags: tuple[str, str],
                      count: Callable[[str], int | None], prefilled: bool = False) -> Generation:
    """The same generation with its thinking apart (in place; an answer done before is left alone).
    ``prefilled``: the model's template opens the thinking in the prompt (the family declares it, or
    the in-process backend opened it and said so in ``raw``)."""
    if "thinking" in gen.raw or gen.raw.get("agent"):
        return gen
    t = split_reasoning(gen.text, gen.reasoning, tags, opened=prefilled or bool(gen.raw.get("thinking_opened")))
    if t.state == "none":
        return gen
    usage = gen.raw.get("usage") if isinstance(gen.raw.get("usage"), dict) else {}
    reported = usage.get("reasoning_tokens") if usage else None
    tokens: int | None
    if isinstance(reported, int) and not isinstance(reported, bool) and reported >= 0:
        tokens, source = reported, "server"
    else:
        tokens, source = (count(t.reasoning), "tokenizer") if t.reasoning else (0, "tokenizer")
        if tokens is None:
            source = "unknown"
    if tokens is not None and gen.completion_tokens is not None:
        tokens = min(tokens, gen.completion_tokens)  # the thinking is part of what was generated, never more
    info: dict[str, Any] = {"state": t.state, "tokens": tokens, "tokens_from": source, "max_tokens": max_tokens}
    gen.text, gen.reasoning = t.answer, t.reasoning or None
    gen.raw = {**gen.raw, "thinking": info}
    if t.censored(gen.finish_reason):
        gen.raw["censored"] = (f"thinking cut off by max_tokens ({max_tokens}) before an answer: raise max_tokens or "
                               "set thinking_budget")
    return gen


def censored(gen: Generation | None) -> str | None:
    """Why an answer was not scored (its thinking was cut off), or None."""
    if gen is None:
        return None
    why = gen.raw.get("censored")
    return why if isinstance(why, str) else None
