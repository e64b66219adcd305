"""Rich tables that never cut what a user copies: identifier columns keep their width (other
columns wrap instead), and no cell anywhere ends in "…": a word too long for its column folds onto
the next line. Rich's default shortens the widest cells first, which in an 80–100-column terminal
is usually the model id."""

from __future__ import annotations

from typing import Iterable

from rich.table import Table
from rich.text import Text

ID_WIDTH_CAP = 48  # an id longer than this folds rather than squeezing every other column to nothing


def _width(cell: object) -> int:
    if isinstance(cell, Text):
        return max((len(line) for line in cell.plain.splitlines()), default=0)
    text = Text.from_markup(cell) if isinstance(cell, str) else Text(str(cell))
    return max((len(line) for line in text.plain.splitlines()), default=0)


def keep_ids_whole(table: Table, id_columns: Iterable[int] = (0,), headers_whole: bool = False) -> Table:
    """Call after the rows are added. Identifier columns keep their widest cell on one line (up to
    ID_WIDTH_CAP); with ``headers_whole`` every column is at least as wide as its header (tables
    whose columns are models). Other columns give way: they wrap, and a word longer than its column
    folds onto the next line – nothing ends in "…"."""
    ids = set(id_columns)
    for i, col in enumerate(table.columns):
        col.overflow = "fold"
        if i in ids:
            col.no_wrap = True
            col.min_width = min(ID_WIDTH_CAP, max([_width(col.header), *(_width(c) for c in col.cells)]))
        elif headers_whole:
            col.min_width = min(ID_WIDTH_CAP, _width(col.header))
    return table
