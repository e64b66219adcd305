"""Resident memory of one in-process model, read from the kernel's own accounting (``/proc/self``).

A model loaded by llama.cpp holds two kinds of memory: its weights, mapped from the GGUF file
(pages become resident as they are read), and what llama.cpp allocates for it (KV cache, compute
buffers: anonymous memory). Several models share one process in a bakeoff, so process RSS alone
cannot tell them apart; instead the weights are the resident pages of *this file's* mappings
(``/proc/self/smaps``) and the allocations are the growth of anonymous RSS since this model began
loading. The peak over the run is what the model needed while it ran. Off Linux nothing is read.
"""

from __future__ import annotations

from pathlib import Path


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def anon_rss() -> int | None:
    """Anonymous resident memory of this process, in bytes."""
    kb = _status_kb("RssAnon")
    return None if kb is None else kb * 1024


def mapped_rss(paths: list[Path]) -> int | None:
    """Resident bytes of every mapping of these files in this process."""
    wanted = {str(p.resolve()) for p in paths}
    total, current = 0, False
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split(maxsplit=5)
                if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    current = len(head) == 6 and head[5].strip() in wanted
                elif current and line.startswith("Rss:"):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return total


class ModelMemory:
    """The peak resident memory of one model while it ran: weights resident + llama.cpp's growth."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.anon_before = anon_rss()
        self.peak_weights = 0
        self.peak_total = 0
        self.samples = 0

    def sample(self) -> None:
        weights, anon = mapped_rss(self.files), anon_rss()
        if weights is None or anon is None or self.anon_before is None:
            return
        self.samples += 1
        self.peak_weights = max(self.peak_weights, weights)
        self.peak_total = max(self.peak_total, weights + max(0, anon - self.anon_before))

    def facts(self) -> dict[str, int] | None:
        if not self.samples:
            return None
        return {"resident_peak_bytes": self.peak_total, "resident_weights_bytes": self.peak_weights,
                "resident_other_bytes": self.peak_total - self.peak_weights, "samples": self.samples}
