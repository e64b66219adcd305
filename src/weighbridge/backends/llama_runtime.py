"""The llama.cpp runtime shared by everything that calls it in-process: the one thread every call
runs on, muting the C library's own logging, and the build facts for a manifest.
"""

from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

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
    """The llama.cpp library's own version and CPU features, for the manifest (once per process)."""
    import llama_cpp

    return {"llama_cpp": llama_cpp.llama_version().decode(),
            "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(" |")}
