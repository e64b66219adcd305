"""The extension points: backends and scorers are found by entry point, the built-ins registered in
weighbridge's own ``pyproject.toml`` exactly like a plugin's. One lookup for both groups, read once
per process."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

BACKENDS = "weighbridge.backends"
SCORERS = "weighbridge.scorers"


@cache
def registered(group: str) -> dict[str, EntryPoint]:
    """Every entry point of ``group``, by name."""
    return {ep.name: ep for ep in entry_points(group=group)}


def backend_types() -> list[str]:
    """Every registered backend: the built-ins (llamacpp, openai) and any plugin's."""
    return sorted(registered(BACKENDS))
