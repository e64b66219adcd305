"""The one terminal sanitiser: nothing from outside reaches a terminal able to drive it.

Model answers, upstream errors, suite ids and tags, audited route names: any of them can hold escape
sequences (clear the screen, print a forged "all cases PASSED", set the window title, write the
clipboard through OSC 52) or Rich markup (``[/]`` that crashed ``bakeoff`` and ``audit show``).
Two layers, so a call site that forgets one is still covered by the other:

- ``SafeConsole`` (every console the CLI prints with) shows each control character of printed
  *text* as its visible picture (ESC as ␛, C1 and bidirectional-override characters as �) before
  Rich adds its own styling, and falls back to plain text when a string is not valid markup instead
  of raising;
- ``term(s)`` escapes Rich markup in a string from outside, for the places that mix it with ours.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.errors import MarkupError
from rich.markup import escape
from rich.segment import Segment

# C0 controls but tab and newline, DEL, C1 controls, and the Unicode direction overrides/isolates
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")


def _picture(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c < 0x20:
        return chr(0x2400 + c)  # ␀ … ␟ (ESC is ␛)
    return "\u2421" if c == 0x7F else "\ufffd"


def visible(text: str) -> str:
    """``text`` with every control character shown, never acted on."""
    return _CONTROL.sub(_picture, text) if _CONTROL.search(text) else text


def term(value: Any) -> str:
    """A value from outside, ready to sit inside our Rich markup: control characters visible, markup
    escaped."""
    return escape(visible(str(value)))


# Off a terminal (a pipe, a log, CI) with no COLUMNS set, Rich would assume 80 columns and fold a
# table's cells ("REGRES / SION") where a reader or grep then misses them: there, a table is as wide
# as its content and a line is not folded.
PIPE_WIDTH = 1000


class SafeConsole(Console):
    """A Rich console whose printed text can never carry a control sequence or break on markup."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self._width is None and not self.is_terminal and not os.environ.get("COLUMNS"):
            return ConsoleDimensions(PIPE_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        # segments hold the text; styles are rendered from Style objects afterwards, so ours survive
        return super()._render_buffer(
            Segment(visible(seg.text), seg.style, seg.control) if not seg.control and seg.text else seg
            for seg in buffer)

    def render_str(self, text: str, **kwargs: Any) -> Any:
        try:
            return super().render_str(text, **kwargs)
        except MarkupError:  # a string from outside that is not valid markup: show it as it is
            kwargs["markup"] = False
            return super().render_str(text, **kwargs)
