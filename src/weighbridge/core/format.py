"""The one place figures and text are formatted for people: every renderer (terminal, HTML, bench and
cost reports, the run viewer) and the pricing that writes reasons use these, so one figure reads the
same wherever it is shown, and every text put into HTML passes one escape."""

from __future__ import annotations

import html
import math


def escape(value: object) -> str:
    """Text from anywhere, safe inside HTML element content and quoted attribute values."""
    return html.escape(str(value), quote=True)


def ms(v: float | None) -> str:
    """A duration in milliseconds: "190 ms" below a second, "2.19 s" from one up; "–" when unknown."""
    if v is None:
        return "–"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def usd(v: float | None) -> str:
    """Dollars with at least two significant digits ($0.000045, $0.0110, $22.19, $1,234.50)."""
    if v is None:
        return "–"
    if v == 0:
        return "$0"
    if v >= 1:
        return f"${v:,.2f}"
    return f"${v:.{max(4, 1 - math.floor(math.log10(v)))}f}"


def usd_budget(v: float | None) -> str:
    """Amounts of a monthly budget, where cents past $100 are noise: "$197", "$40.32", "$0.747"."""
    if v is None:
        return "–"
    if v >= 100:
        return f"${v:,.0f}"
    if v >= 1:
        return f"${v:,.2f}"
    if v == 0:
        return "$0"
    return f"${v:.{max(3, 1 - math.floor(math.log10(v)))}f}"


def count_label(v: float) -> str:
    """A large count the way people say it: 150k, 1.27M, 3.40B."""
    if v >= 1e9:
        return f"{v / 1e9:.2f}B"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:,.0f}"
