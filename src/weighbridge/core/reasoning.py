"""A reasoning model's thinking, kept apart from its answer.

Reasoning models (the DeepSeek-R1 line, Qwen3 in thinking mode, QwQ) write their thinking first.
Servers hand it over in a field of its own (``reasoning_content``) or leave it in the text between
tags (``<think>…</think>``); a template that pre-fills the opening tag leaves only the closing one in
what the model wrote. This module is the one place that tells thinking from answer:

- ``closed``: ``<think>…</think>`` then the answer;
- ``prefilled``: thinking, ``</think>``, the answer - the opening tag was in the prompt;
- ``open``: ``<think>`` and no closing tag - the model was still thinking when it stopped;
- ``field``: the server sent the thinking in its own field (and the text is the answer);
- ``none``: no thinking at all.

An answer whose thinking was cut off by ``max_tokens`` (``open``, or a field with no answer text, and
the finish reason ``length``) has no answer to score: it is **censored**, an outcome of its own,
counted and shown, never scored as a wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_TAGS = ("<think>", "</think>")
State = Literal["none", "closed", "prefilled", "open", "field"]


@dataclass(frozen=True)
class Thinking:
    reasoning: str  # every thinking passage, joined
    answer: str  # what is left: the answer scorers judge
    state: State

    def censored(self, finish_reason: str | None) -> bool:
        """The thinking was still going when ``max_tokens`` ended the answer: nothing was answered."""
        if finish_reason != "length":
            return False
        return self.state == "open" or (self.state == "field" and not self.answer.strip())


def split_reasoning(text: str, field: str | None = None, tags: tuple[str, str] = DEFAULT_TAGS,
                    opened: bool = False) -> Thinking:
    """Thinking and answer of one model output. ``field`` is a server's reasoning field (it wins: the
    text is then the answer, though a stray tagged block in it is still taken out). ``opened``: the
    prompt opened the thinking (a template that pre-fills the tag), so the text starts inside it and
    one with no closing tag is all thinking, cut off."""
    start, end = tags
    if opened and not text.lstrip().lower().startswith(start.lower()):
        if end.lower() not in text.lower():
            return Thinking(reasoning=text.strip(), answer="", state="open") if text.strip() or not field else \
                split_reasoning("", field, tags)
    low = text.lower()
    s, e = start.lower(), end.lower()
    parts: list[str] = []
    answer: list[str] = []
    state: State = "none"
    i = 0
    first_end = low.find(e)
    first_start = low.find(s)
    if first_end != -1 and (first_start == -1 or first_end < first_start):
        # a closing tag before any opening one: the template opened the thinking in the prompt
        parts.append(text[:first_end])
        i = first_end + len(end)
        state = "prefilled"
    while True:
        j = low.find(s, i)
        if j == -1:
            answer.append(text[i:])
            break
        answer.append(text[i:j])
        k = low.find(e, j + len(start))
        if k == -1:  # opened and never closed: cut off while thinking
            parts.append(text[j + len(start):])
            state = "open"
            break
        parts.append(text[j + len(start):k])
        i = k + len(end)
        if state == "none":
            state = "closed"
    if field:
        parts.insert(0, field)
        if state == "none":
            state = "field"
    reasoning = "\n".join(p.strip() for p in parts if p.strip())
    return Thinking(reasoning=reasoning, answer="".join(answer).strip() if parts or field else text, state=state)
