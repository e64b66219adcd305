"""Which models run side by side and which wait for each other (the config's ``schedule:``)."""

from __future__ import annotations

from ..core.config import ModelSpec


def is_local(spec: ModelSpec) -> bool:
    """Does this model compute on this machine (in-process, or a server on loopback)?"""
    from ..core.net import url_is_this_machine

    return spec.backend == "llamacpp" or url_is_this_machine(spec.base_url or "")


def lanes(schedule: str, specs: list[ModelSpec]) -> list[list[str]]:
    """Group models into lanes that run side by side; models within a lane run one after another.

    'auto' puts every model that computes on this machine into one lane, so local models never
    share the CPU/GPU and distort each other's latency, while remote endpoints run in parallel.
    """
    if schedule == "sequential":
        return [[s.name for s in specs]]
    if schedule == "parallel":
        return [[s.name] for s in specs]
    local = [s.name for s in specs if is_local(s)]
    return ([local] if local else []) + [[s.name] for s in specs if not is_local(s)]
