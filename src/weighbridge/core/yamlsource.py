"""YAML loading that remembers where each value came from.

Pydantic reports a bad value by its path (``models.1.backend``); people need a line number. We
compose the YAML node tree once (libyaml), check it against the limits of ``inputs`` (duplicate
keys, depth, aliases), keep a map from path to line, and translate validation errors through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .inputs import MAX_ALIAS_EXPANSION, MAX_DEPTH, MAX_YAML_BYTES, read_text

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


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~5x faster than the pure-Python parser


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_tree(root: yaml.Node, path: str) -> None:
    """Duplicate keys, nesting depth, recursive aliases and alias expansion, checked on the composed
    node graph without recursion and before anything is constructed: a 9-level alias bomb is
    refused in milliseconds instead of expanding for minutes, a 20,000-deep list does not overflow."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    distinct = 0
    duplicates: list[tuple[int, str, str]] = []  # the first in the file is the one reported
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = (1 + max((depth[id(k)] for k in kids), default=0)) if kids or not isinstance(
                node, yaml.ScalarNode) else 0
            state[key] = 2
            if depth[key] > MAX_DEPTH:
                raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", path=path, line=node.start_mark.line + 1)
            if size[key] - distinct > MAX_ALIAS_EXPANSION:
                raise ConfigError(f"aliases expand this document past {MAX_ALIAS_EXPANSION:,} extra values "
                                  "(an alias bomb?)", path=path, line=node.start_mark.line + 1)
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            raise ConfigError("an alias refers to a value that contains it (a recursive alias)", path=path,
                              line=node.start_mark.line + 1)
        state[key] = 1
        distinct += 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                    k = (key_node.tag, key_node.value)
                    line = key_node.start_mark.line + 1
                    if k in seen:
                        duplicates.append((line, str(key_node.value), f"duplicate key '{key_node.value}' (first at "
                                           f"line {seen[k]}; YAML would silently keep the last)"))
                    else:
                        seen[k] = line
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if state.get(id(k)) != 2)
    if duplicates:
        line, field_name, message = min(duplicates)
        raise ConfigError(message, path=path, line=line, field=field_name)


def load_yaml(path: str | Path, text: str | None = None) -> LocatedYaml:
    """Parse ``path`` (or ``text`` attributed to it) within the limits of ``inputs``; every problem
    becomes a ConfigError with a line."""
    path = str(path)
    if text is None:
        text = read_text(path, max_bytes=MAX_YAML_BYTES, kind="YAML")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_tree(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"YAML syntax error: {e.problem or e}", path=path, line=line) from None
    except yaml.YAMLError as e:  # the reader: a character YAML does not allow
        position = getattr(e, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        raise ConfigError(f"not valid YAML text: {e}".split("\n")[0], path=path, line=line) from None
    finally:
        loader.dispose()
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
