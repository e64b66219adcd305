"""YAML loading that remembers where each value came from.

Pydantic reports a bad value by its path (``models.1.backend``); people need a line number. We
compose the YAML node tree once, keep a map from path to line, and translate validation errors
through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass
class LocatedYaml:
    """Parsed data plus the line (1-based) at which each path starts."""

    data: Any
    path: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of the deepest known prefix of ``loc`` (a missing field points at its parent)."""
        loc = tuple(loc)
        while True:
            if loc in self.lines:
                return self.lines[loc]
            if not loc:
                return None
            loc = loc[:-1]


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, loc + (key,), lines)
            lines[loc + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, loc + (i,), lines)


def load_yaml(path: str | Path, text: str | None = None) -> LocatedYaml:
    """Parse ``path`` (or ``text`` attributed to it); syntax errors become ConfigError with a line."""
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("file not found", path=path) from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"not UTF-8 text ({e.reason})", path=path) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"YAML syntax error: {e.problem or e}", path=path, line=line) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return LocatedYaml(data=data, path=path, lines=lines)


def validation_error(err: ValidationError, source: LocatedYaml | None, path: str,
                     prefix: Loc = (), base_line: int | None = None) -> ConfigError:
    """Turn the first Pydantic error into a ConfigError that names file, line and field."""
    first = err.errors()[0]
    loc = prefix + tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    line = source.line_of(loc) if source is not None else base_line
    field_name = ".".join(str(p) for p in loc) or None
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field (check its spelling)"
    more = len(err.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(msg, path=path, line=line, field=field_name)


M = TypeVar("M", bound=BaseModel)


def load_mapping(path: str | Path, model: type[M], *, expected: str) -> M:
    """Read a YAML file that must be one mapping and validate it as ``model``.

    ``expected`` says what the top level should hold when it is not a mapping; every other
    problem comes back as a ConfigError naming file, line and field.
    """
    src = load_yaml(path)
    if not isinstance(src.data, dict):
        raise ConfigError(expected, path=str(path), line=1)
    try:
        return model.model_validate(src.data)
    except ValidationError as e:
        raise validation_error(e, src, str(path)) from None
