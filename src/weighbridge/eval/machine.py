"""The machine part of a run's manifest: enough to explain why two runs' latencies differ."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def machine_facts() -> dict[str, Any]:
    """The machine part of the manifest: enough to explain why two runs' latencies differ."""
    from ..core.contention import cpu_model, physical_cores, usable_cpus

    facts: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0],
                             "cpu_count": os.cpu_count(), "usable_cpus": usable_cpus(),
                             "physical_cores": physical_cores(),
                             "processor": platform.processor() or platform.machine()}
    model = cpu_model()
    if model is not None:
        facts["cpu_model"] = model
    try:
        with open("/proc/meminfo") as f:
            facts["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    return facts
