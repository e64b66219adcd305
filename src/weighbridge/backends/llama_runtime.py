"""The llama.cpp runtime shared by everything that calls it in-process: the one thread every call
runs on, muting the C library's own logging, and the build facts for a manifest.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from ..core.filecache import file_key, remembered
from ..core.hashing import stable_hash

# Every llama.cpp call in the process runs on this one thread. llama.cpp parallelises with OpenMP,
# which keeps a team of spinning worker threads per *calling* thread: calls from several threads
# (asyncio's default pool) build several teams that fight over the cores and, on 2 cores, halve
# decode speed (measured with bench/llamacpp_throughput.py). One thread also means two local
# models never share the CPU at once, so neither distorts the other's timings.
LLAMA_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="weighbridge-llama")


@contextlib.contextmanager
def quiet_stderr(enabled: bool) -> Iterator[None]:
    """llama.cpp's C code logs to fd 2 on load and first decode even with verbose=False; mute just that."""
    if not enabled:
        yield
        return
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.cache
def llama_cpp_build() -> dict[str, str]:
    """The llama.cpp library's own version and CPU features, for the manifest: asked of the library
    once per build and CPU (importing llama_cpp takes a tenth of a second, and a re-run whose answers
    all come from the cache loads no model otherwise)."""
    lib = _library_file()
    if lib is None:
        return _ask_library()
    try:
        key = f"{file_key(lib)}|{_cpu_identity()}"
    except OSError:
        return _ask_library()
    return remembered("llama-cpp-build", key, _ask_library,
                      lambda v: isinstance(v, dict) and set(v) == {"llama_cpp", "llama_cpp_system_info"}
                      and all(isinstance(x, str) and len(x) < 4096 for x in v.values()))


def _ask_library() -> dict[str, str]:
    import llama_cpp

    return {"llama_cpp": llama_cpp.llama_version().decode(),
            "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(" |")}


def _library_file() -> str | None:
    """libllama's path inside the installed llama_cpp package, found without importing it."""
    spec = importlib.util.find_spec("llama_cpp")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for name in ("libllama.so", "libllama.dylib", "llama.dll"):
            if os.path.isfile(p := os.path.join(folder, "lib", name)):
                return p
    return None


def _cpu_identity() -> str:
    """The CPU's model and feature flags (the system info lists the features llama.cpp found)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f.read(1 << 20).splitlines() if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = [platform.processor(), platform.machine()]
    return stable_hash(lines)[:16]
