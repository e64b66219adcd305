"""Was the machine busy while we measured? Latency and tokens/s on a CPU are only figures of the model
when nothing else competed for the cores.

llama.cpp's threads spin while they wait for each other: when more threads want to run than there
are CPUs (a second llama.cpp, a build, a CPU hog), every token waits for a descheduled thread and
the same model on the same prompts runs many times slower (two llama.cpp processes on two cores ran
45× slower than one here). So while a bakeoff or a bench runs, a thread samples the kernel's own
counters twice a second (Linux ``/proc``; elsewhere nothing is sampled and the manifest says so):

- ``procs_running`` from ``/proc/stat``: threads runnable at that instant, ours included, against the
  CPUs there are. More runnable threads than CPUs is oversubscription, whoever they belong to;
- the CPU time of the whole machine (busy, steal) and of this process, over the window;
- the 1-minute load average.

A window is marked busy when the runnable threads averaged more than the CPUs (plus half a CPU for
the sampler and the event loop), or a hypervisor stole more than 10% of the CPU time. The figures
that show it are kept beside the mark.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE_S = 0.5
STEAL_BUSY = 0.10  # share of CPU time stolen by the hypervisor that makes a window busy


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores(cpus: set[int] | None = None) -> int | None:
    """Distinct physical cores among ``cpus`` (default: the affinity mask), from sysfs topology;
    None where the kernel does not say."""
    try:
        cpus = cpus if cpus is not None else set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    cores = set()
    for cpu in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((base.joinpath("physical_package_id").read_text().strip(),
                       base.joinpath("core_id").read_text().strip()))
        except OSError:
            return None
    return len(cores) or None


def cpu_model() -> str | None:
    """The CPU's model name as the kernel gives it (/proc/cpuinfo), or None where it does not say."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), or None off Linux."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def default_threads() -> int:
    """llama.cpp's thread count when the config sets none: one per physical core the process may use,
    never more than the CPUs in its affinity mask (hyper-threads and CPUs it may not use only make its
    spinning threads wait for each other)."""
    usable = usable_cpus()
    cores = physical_cores()
    return max(1, min(usable, cores)) if cores else usable


@dataclass
class _Sample:
    t: float
    running: int  # runnable threads, machine-wide
    busy: float  # machine CPU seconds not idle (user, nice, system, irq, softirq, steal) since boot
    total: float
    steal: float
    own: float  # this process's CPU seconds (threads included)
    load1: float


def _read_sample() -> _Sample | None:
    try:
        stat = Path("/proc/stat").read_text()
        load1 = float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    running, fields = 0, None
    for line in stat.splitlines():
        if line.startswith("cpu "):
            fields = [float(x) for x in line.split()[1:]]
        elif line.startswith("procs_running"):
            running = int(line.split()[1])
    if fields is None or len(fields) < 8:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    user, nice, system, idle, iowait, irq, softirq, steal = (f / tick for f in fields[:8])
    busy = user + nice + system + irq + softirq + steal
    return _Sample(time.monotonic(), running, busy, busy + idle + iowait, steal, time.process_time(), load1)


class LoadSampler:
    """Samples the machine in a daemon thread; ``window(t0, t1)`` sums up any stretch of it."""

    def __init__(self, every_s: float = SAMPLE_S) -> None:
        self.every_s = every_s
        self.samples: list[_Sample] = []
        self.cpus = os.cpu_count() or 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return _read_sample() is not None

    def __enter__(self) -> "LoadSampler":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None or not self.available:
            return
        self._take()
        self._thread = threading.Thread(target=self._loop, name="weighbridge-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._take()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._take()

    def _take(self) -> None:
        s = _read_sample()
        if s is not None:
            with self._lock:
                self.samples.append(s)
                if len(self.samples) > 200_000:  # a day at two a second: keep every other one
                    self.samples = self.samples[::2]

    def window(self, t0: float | None = None, t1: float | None = None,
               llama_threads: int | None = None) -> dict[str, Any]:
        """What the machine did between two ``time.monotonic()`` instants (default: all of it);
        ``llama_threads``: an in-process llama.cpp's thread count, judged against the usable CPUs."""
        with self._lock:
            inside = [s for s in self.samples if (t0 is None or s.t >= t0 - self.every_s)
                      and (t1 is None or s.t <= t1 + self.every_s)]
        return summarise(inside, self.cpus, llama_threads)


def summarise(samples: list[_Sample], cpus: int, llama_threads: int | None = None) -> dict[str, Any]:
    """The contention figures of a window, and whether they make it busy (with why)."""
    why = []
    if llama_threads is not None and llama_threads > usable_cpus():
        why.append(f"n_threads {llama_threads} > the {usable_cpus()} CPU(s) this process may use")
    threads = {} if llama_threads is None else {"llama_threads": llama_threads}
    if len(samples) < 2:
        return {"sampled": False, "busy": bool(why), **threads,
                "why": "; ".join(why) or "too short to sample, or no /proc here"}
    first, last = samples[0], samples[-1]
    wall = last.t - first.t
    total = last.total - first.total
    runnable = sum(s.running for s in samples) / len(samples) - 1  # the sampler was running as it read
    steal = (last.steal - first.steal) / total if total > 0 else 0.0
    machine_cores = (last.busy - first.busy) / wall if wall > 0 else 0.0
    own_cores = (last.own - first.own) / wall if wall > 0 else 0.0
    out: dict[str, Any] = {
        "sampled": True, "seconds": round(wall, 1), "samples": len(samples), "cpus": cpus,
        "usable_cpus": usable_cpus(), "runnable_threads_mean": round(max(runnable, 0.0), 2),
        "load1_max": max(s.load1 for s in samples), "steal_share": round(steal, 3),
        "machine_busy_cores": round(machine_cores, 2), "own_process_cores": round(own_cores, 2),
        "other_cores": round(max(machine_cores - own_cores, 0.0), 2), **threads}
    if runnable > cpus + 0.5:
        why.append(f"{runnable:.1f} runnable threads on {cpus} CPU(s) on average")
    if steal > STEAL_BUSY:
        why.append(f"{steal:.0%} of the CPU time stolen by the hypervisor")
    out["busy"] = bool(why)
    out["why"] = "; ".join(why) or None
    return out


def busy_note(contention: dict[str, Any] | None) -> str | None:
    """The mark a figure measured in this window carries, or None when the machine was not busy."""
    if not isinstance(contention, dict) or not contention.get("busy"):
        return None
    return (f"measured on a busy machine: {contention.get('why')} (load {contention.get('load1_max')}, "
            f"other processes {contention.get('other_cores')} cores)")
