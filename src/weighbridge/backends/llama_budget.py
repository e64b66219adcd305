"""Single-answer decoding through llama-cpp-python's own loop, with a thinking budget enforced.

The budget needs to watch the answer as it grows and to resume decoding after closing the thinking
itself; that is one sequence's affair, so these answers decode alone (``llama_batch`` decodes the rest
together).
"""

from __future__ import annotations

from typing import Any

from ..core.errors import BackendError
from .base import Request, Timings


def stream(llm: Any, tokens: list[int], request: Request, max_tokens: int, stops: list[str],
            grammar: Any, timings: Timings, pieces: list[str], until: Any = None) -> str | None:
    """Decode into ``pieces``; stop early when ``until(pieces)`` says so. The finish reason, or
    "until" when it stopped early."""
    finish = None
    try:
        for chunk in llm.create_completion(prompt=tokens, max_tokens=max_tokens, temperature=request.temperature,
                                           top_p=request.top_p, seed=request.seed, stop=stops or None,
                                           stream=True, grammar=grammar):
            choice = chunk["choices"][0]
            if choice.get("text"):
                timings.mark_token()
                pieces.append(choice["text"])
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
            elif until is not None and until(pieces):  # an answer that ended here keeps its own ending
                return "until"
    except (ValueError, RuntimeError) as e:
        raise BackendError(f"llama.cpp failed: {e}", kind="engine") from None
    return finish

def decode(llm: Any, tokens: list[int], request: Request, stops: list[str], grammar: Any,
            timings: Timings, budget: int | None,
           tags: tuple[str, str]) -> tuple[list[str], str | None, bool]:
    """The answer's pieces and finish reason; with a thinking budget, thinking that reaches it is
    closed here (the closing tag appended, as Qwen's guidance for budgets does) and the answer
    decoded after it within what is left of max_tokens. Whether that happened is the third value."""
    pieces: list[str] = []
    if budget is None or budget >= request.max_tokens:
        return pieces, stream(llm, tokens, request, request.max_tokens, stops, grammar, timings, pieces), False
    start, end = tags
    # a template that opens the thinking in the prompt (pre-filled tag): the answer starts inside it
    prefilled = llm.detokenize(tokens[-8:]).decode("utf-8", "ignore").rstrip().lower().endswith(start.lower())

    def thinking(text: str) -> bool | None:
        """Is this output thinking? None while it could still become the opening tag."""
        if prefilled:
            return True
        head = text.lstrip().lower()
        if len(head) < len(start):
            return None if start.lower().startswith(head) else False
        return head.startswith(start.lower())

    def thinking_over(ps: list[str]) -> bool:
        text = "".join(ps)
        state = thinking(text)
        return state is False or (state is True and end.lower() in text.lower()) or len(ps) >= budget

    finish = stream(llm, tokens, request, request.max_tokens, stops, grammar, timings, pieces, thinking_over)
    text = "".join(pieces)
    if finish != "until" or not thinking(text) or end.lower() in text.lower():
        if finish == "until":  # not thinking, or the thinking closed in time: go on as one answer
            finish = stream(llm, tokens + llm.tokenize(text.encode("utf-8"), add_bos=False, special=True),
                                  request, max(request.max_tokens - len(pieces), 1), stops, grammar, timings, pieces)
        return pieces, finish, False
    pieces.append(f"\n{end}\n\n")  # the budget is spent: close the thinking, then the answer
    rest = request.max_tokens - len(pieces) + 1
    if rest <= 0:
        return pieces, "length", True
    prompt = tokens + llm.tokenize("".join(pieces).encode("utf-8"), add_bos=False, special=True)
    return pieces, stream(llm, prompt, request, rest, stops, grammar, timings, pieces), True
