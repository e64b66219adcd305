"""Checking a JSON Schema once: a suite offers the same few tool schemas in every case (the built-in
tools suite: 134 checks of 22 schemas), and checking one against its metaschema costs a millisecond
or more - most of a cached re-run's suite load. A schema found valid is remembered by its canonical
JSON; an invalid one is checked again every time, so that each case gets its own error."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

_VALID: set[str] = set()
_MAX_REMEMBERED = 4096  # schemas; past it the set starts over (a suite of millions stays bounded)


def check_schema(schema: Any) -> type[Any]:
    """The validator class for ``schema``, after checking the schema against its metaschema
    (``jsonschema.SchemaError`` when it is not valid)."""
    cls: type[Any] = jsonschema.validators.validator_for(schema)
    try:
        key = f"{cls.__name__}|{json.dumps(schema, sort_keys=True, ensure_ascii=False, separators=(',', ':'))}"
    except (TypeError, ValueError):  # not plain JSON (a YAML date): checked every time, never remembered
        cls.check_schema(schema)
        return cls
    if key not in _VALID:
        cls.check_schema(schema)
        if len(_VALID) >= _MAX_REMEMBERED:
            _VALID.clear()
        _VALID.add(key)
    return cls
