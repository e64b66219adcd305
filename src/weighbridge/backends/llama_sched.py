"""The answers of one in-process model decoded together: requests join a queue, and one loop on the
llama.cpp thread keeps a batch full (continuous batching) until the queue is empty.

Each sequence has its own ``n_ctx`` cells of KV cache (llama.cpp's split cache): a token attends only
to its own answer's cells. A unified cache would hold memory to one context's, but every token then
attends over every sequence's cells - at 16 answers of ~200 tokens it halved SmolLM2's tokens/s
(measured, 164 vs 300). So memory grows with the batch, and ``batch: auto`` keeps it within a quarter
of the memory available when the model loads. With auto the size is measured then (aggregate
tokens/s at 1, 2, 4 …); the figures are kept for the run's record.
"""

from __future__ import annotations

import asyncio
import json
import math
import platform
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..core.config import BATCH_AUTO_MAX
from ..core.contention import LoadSampler, available_memory, busy_note, cpu_model
from ..core.errors import BackendError, WeighbridgeError
from ..core.files import write_atomic
from ..core.filecache import cache_dir
from ..core.hashing import cached_sha256
from ..core.types import Generation, Request, Timings
from .llama_batch import BatchContext, Sequence, choose_size, measure
from .llama_runtime import LLAMA_THREAD, llama_cpp_build, quiet_stderr

CALIBRATION_TEXT = b"Once upon a time"  # short: what is timed is decoding, not the prompts
CALIBRATION_STEPS = 8
# a measurement is reused for a week on this machine (same model file, threads, ceiling, llama.cpp
# build and CPU); the run's record says when it was made
CALIBRATION_TTL_S = 7 * 86400


def _rates_file() -> Path:
    return cache_dir() / "batch-rates.json"


def _stored_rates(key: str) -> tuple[dict[int, float], float] | None:
    """A week-old-at-most measurement for ``key``, read strictly (a damaged file is measured again)."""
    try:
        entry = json.loads(_rates_file().read_text())[key]
        at = float(entry["at"])
        rates = {int(k): float(v) for k, v in entry["rates"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    fine = rates and all(k in (1 << i for i in range(9)) and math.isfinite(v) and v > 0 for k, v in rates.items())
    return (rates, at) if fine and 0 <= time.time() - at < CALIBRATION_TTL_S else None


def _store_rates(key: str, rates: dict[int, float], at: float) -> None:
    path = _rates_file()
    try:
        data = json.loads(path.read_text())
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data = {k: v for k, v in data.items() if isinstance(v, dict) and time.time() - float(v.get("at", 0)) < CALIBRATION_TTL_S}
    data[key] = {"at": at, "rates": {str(k): v for k, v in rates.items()}}
    try:
        write_atomic(path, json.dumps(data))
    except OSError:
        pass  # a read-only home only costs a measurement next time


@dataclass
class _Job:
    request: Request
    future: asyncio.Future[Generation]
    loop: asyncio.AbstractEventLoop
    prep: Any = None  # the backend's Prepared, once the prompt is rendered
    timings: Timings = field(default_factory=Timings)


class _Cancelled(BackendError):
    """An answer nobody waits for: its cells are sound, only its decoding stopped."""


def kv_bytes_per_cell(meta: dict[str, Any]) -> int:
    """Bytes of f16 KV cache one token of one sequence takes (keys and values of every layer), from the
    GGUF header; 0 when the header does not say (then no memory cap applies)."""
    arch = meta.get("general.architecture")

    def num(key: str) -> int:
        v = meta.get(f"{arch}.{key}")
        if isinstance(v, list):  # per-layer values
            v = max((x for x in v if isinstance(x, int)), default=0)
        return v if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 20 else 0

    layers, heads, kv_heads = num("block_count"), num("attention.head_count"), num("attention.head_count_kv")
    head_dim = num("embedding_length") // heads if heads else 0
    k_len, v_len = num("attention.key_length") or head_dim, num("attention.value_length") or head_dim
    return layers * (kv_heads or heads) * (k_len + v_len) * 2


def _settle(future: asyncio.Future[Generation], outcome: Generation | BaseException) -> None:
    if future.done():  # cancelled while it decoded
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class BatchScheduler:
    """Decodes the requests of one ``LlamaCppBackend`` together; the backend renders prompts and turns
    answers into Generations (``_prepare`` / ``_result``), this decides who decodes when."""

    def __init__(self, backend: Any, size: int | Literal["auto"], ceiling: int) -> None:
        self.backend = backend
        self.size = min(size, ceiling) if isinstance(size, int) else size
        self.ceiling = ceiling  # the most answers the engine sends at once: a larger batch would sit empty
        self.chosen: int | None = None
        self.rates: dict[int, float] = {}  # measured aggregate tokens/s by batch size (auto)
        self.calibration_seconds = 0.0
        self.reused = False  # the rates were measured by an earlier run on this machine
        self.measured_busy: str | None = None  # the mark of a measurement other processes competed with
        self.measured_at: float | None = None
        self.sequences = 0
        self._spent = [0.0, 0.0, 0]  # decode seconds, sequence-seconds, prompt tokens reused: of closed contexts
        self._queue: deque[_Job] = deque()
        self._guard = threading.Lock()  # the queue and the serving flag: touched from the event loop too
        self._serving = False
        self._ctx: BatchContext | None = None
        self._running: dict[int, _Job] = {}
        self.cells_seen = 0  # the most KV cells a slot has had (the batch grows them as answers need)
        self.memory_cap: int | None = None  # the largest batch the memory allowed (auto)

    async def submit(self, request: Request) -> Generation:
        loop = asyncio.get_running_loop()
        job = _Job(request, loop.create_future(), loop)
        with self._guard:
            self._queue.append(job)
            start, self._serving = not self._serving, True
        if start:
            LLAMA_THREAD.submit(self._serve)
        return await job.future

    # -- on the llama.cpp thread --------------------------------------------------------------
    def _deliver(self, job: _Job, outcome: Generation | BaseException) -> None:
        try:
            job.loop.call_soon_threadsafe(_settle, job.future, outcome)
        except RuntimeError:  # its event loop is gone (the run ended): nobody waits for this answer
            pass

    def _serve(self) -> None:
        b = self.backend
        try:
            with b._lock, quiet_stderr(b.calls == 0):
                llm = b._load()
                if self.chosen is None:
                    self._choose(llm)
                while True:
                    self._admit(llm)
                    ctx = self._ctx
                    if ctx is not None:
                        self._drop_cancelled(ctx)
                    if ctx is None or not ctx.active:
                        with self._guard:
                            if not self._queue:
                                self._serving = False
                                return
                        continue
                    try:
                        finished = ctx.step()
                    except BackendError as e:  # this batch's answers fail; the queue goes on
                        for seq in list(ctx.active):
                            self._release(ctx, seq, e)
                        continue
                    for seq in finished:
                        self._release(ctx, seq, None)
        except BaseException as e:  # noqa: BLE001 - the model would not load: every waiting answer says why
            err = e if isinstance(e, WeighbridgeError) else BackendError(f"llama.cpp failed: {e}", kind="engine")
            with self._guard:
                waiting, self._serving = list(self._queue) + list(self._running.values()), False
                self._queue.clear()
            self._running.clear()
            self.close()  # its sequences were this failure's: a later request starts afresh
            for job in waiting:
                self._deliver(job, err)

    def _choose(self, llm: Any) -> None:
        per_seq = kv_bytes_per_cell(self.backend.metadata) * self.backend.spec.n_ctx
        self.chosen = self.size if isinstance(self.size, int) else self._calibrate(llm, per_seq)

    def _fit(self, llm: Any, need: int) -> BatchContext | None:
        """A context whose slots hold ``need`` cells: the one there is, or - once its answers are done -
        a new one of the next power of two (512 at least, ``n_ctx`` at most). Cells are sized by what the
        answers need, not by ``n_ctx``: each slot's cache is its own, so the batch's memory is slots ×
        cells. None while the running batch is too small and still busy (the request waits its turn)."""
        ctx = self._ctx
        if ctx is not None and need <= ctx.cells_per_seq:
            return ctx
        if ctx is not None and ctx.active:
            return None
        self.close()
        cells = min(self.backend.spec.n_ctx, max(512, 1 << max(need - 1, 1).bit_length()))
        assert self.chosen is not None
        self._ctx = BatchContext(llm, self.chosen, cells)
        self.cells_seen = max(self.cells_seen, self._ctx.cells_per_seq)
        return self._ctx

    def _calibrate(self, llm: Any, per_seq: int) -> int:
        """Aggregate decode tokens/s at 1, 2, 4 … sequences, as many as a quarter of the available
        memory holds KV caches for; the largest size that still gains 10%."""
        t0 = time.perf_counter()
        prompt = llm.tokenize(CALIBRATION_TEXT, add_bos=True)
        ceiling = min(BATCH_AUTO_MAX, self.ceiling)
        available = available_memory()
        if per_seq and available:
            self.memory_cap = ceiling = max(1, min(ceiling, available // 4 // per_seq))
        b = self.backend
        key = "|".join(map(str, (b.sha256, b.n_threads, cached_sha256(b.lora) if b.lora else "", ceiling,
                                 llama_cpp_build().get("llama_cpp"), cpu_model() or platform.machine())))
        stored = _stored_rates(key)
        if stored is not None:
            self.rates, self.measured_at, self.reused = stored[0], stored[1], True
            return choose_size(self.rates)
        self.measured_at = time.time()
        sizes = [1 << i for i in range(ceiling.bit_length()) if 1 << i <= ceiling]
        # one answer at a time is measured again at the end, the best of the two kept: it is the baseline
        # every size is judged against, and the first figure meets whatever the machine was still doing
        # (the previous model's last answers being scored)
        # the machine is watched while it measures (a few seconds: sampled ten times a second); rates
        # measured beside other work are marked, and not kept for later runs to reuse
        with LoadSampler(every_s=0.1) as sampler:
            for size in sizes + [1] * (len(sizes) > 1):
                ctx = BatchContext(llm, size, len(prompt) + CALIBRATION_STEPS + 8)
                try:
                    rate = round(measure(llm, ctx, size, prompt, CALIBRATION_STEPS), 1)
                finally:
                    ctx.close()
                self.rates[size] = max(rate, self.rates.get(size, 0.0))
        self.calibration_seconds = time.perf_counter() - t0
        self.measured_busy = busy_note(sampler.window(llama_threads=b.n_threads))
        if self.measured_busy is None:
            _store_rates(key, self.rates, self.measured_at)
        return choose_size(self.rates)

    def _admit(self, llm: Any) -> None:
        """Fill free slots from the queue, in order."""
        while True:
            with self._guard:
                if not self._queue:
                    return
                job = self._queue[0]
            if job.future.cancelled():
                self._pop()
                continue
            if job.prep is None:
                try:
                    job.prep = self.backend._prepare(llm, job.request)
                except BackendError as e:
                    self._pop()
                    self._deliver(job, e)
                    continue
            ctx = self._fit(llm, len(job.prep.tokens) + job.request.max_tokens)
            if ctx is None or not ctx.has_room:
                return
            self._pop()
            self._start(llm, ctx, job)

    def _pop(self) -> None:
        with self._guard:
            self._queue.popleft()

    def _start(self, llm: Any, ctx: BatchContext, job: _Job) -> None:
        request = job.request
        # the sampler chain llama-cpp-python builds for one answer, seeded as create_completion seeds it
        llm.set_seed(request.seed if request.seed is not None else random.Random(llm._seed).randint(0, 2 ** 32))
        sampler = llm._init_sampler(top_k=40, top_p=request.top_p, min_p=0.05, typical_p=1.0,
                                    temp=request.temperature, repeat_penalty=1.0, grammar=job.prep.grammar)
        job.timings = Timings(sent=time.perf_counter_ns())
        seq = Sequence(prompt=list(job.prep.tokens), max_tokens=request.max_tokens,
                       stops=[s.encode("utf-8") for s in job.prep.stops], sampler=sampler,
                       on_text=job.timings.mark_token)
        ctx.admit(seq)
        self._running[id(seq)] = job
        self.backend.calls += 1
        self.sequences += 1

    def _release(self, ctx: BatchContext, seq: Sequence, error: BaseException | None) -> None:
        job = self._running.pop(id(seq))
        seq.sampler.close()
        if seq in ctx.active:  # failed mid-batch or cancelled: its slot is freed here
            ctx.retire(seq, intact=error is None or isinstance(error, _Cancelled))
        if error is not None:
            self._deliver(job, error)
            return
        try:
            gen = self.backend._result(self.backend._llama, job.request, job.prep,
                                       seq.text.decode("utf-8", "ignore"), seq.finish, job.timings)
        except Exception as e:  # noqa: BLE001 - one answer's own failure (its tool calls, its tokens) is its error
            self._deliver(job, e if isinstance(e, WeighbridgeError)
                          else BackendError(f"llama.cpp answer failed: {e}", kind="engine"))
            return
        self._deliver(job, gen)

    def _drop_cancelled(self, ctx: BatchContext) -> None:
        """Answers nobody waits for any more (the run was interrupted) stop decoding now."""
        for seq in list(ctx.active):
            if self._running[id(seq)].future.cancelled():
                self._release(ctx, seq, _Cancelled("cancelled", kind="engine"))

    def close(self) -> None:
        if self._ctx is not None:
            for i, v in enumerate(self._figures(self._ctx)):
                self._spent[i] += v
            self._ctx.close()
            self._ctx = None

    @staticmethod
    def _figures(ctx: BatchContext) -> tuple[float, float, int]:
        return ctx.busy_seconds, ctx.sequence_seconds, ctx.reused_tokens

    def facts(self) -> dict[str, Any] | None:
        """What the run keeps about batching: the size, how it was chosen, and how full it ran."""
        if self.chosen is None:
            return None
        live = self._figures(self._ctx) if self._ctx is not None else (0.0, 0.0, 0)
        busy, sequence_seconds, reused = (a + b for a, b in zip(self._spent, live))
        cells = self._ctx.cells_per_seq if self._ctx is not None else self.cells_seen
        per_cell = kv_bytes_per_cell(self.backend.metadata)
        return {"size": self.chosen, "chosen_by": "measured" if self.rates else "config",
                **({"tokens_per_s": {str(k): v for k, v in self.rates.items()},
                    "measured_at": datetime.fromtimestamp(self.measured_at or 0, timezone.utc).isoformat(
                        timespec="seconds"),
                    "measurement_reused": self.reused,
                    **({"measured_busy": self.measured_busy} if self.measured_busy else {}),
                    "calibration_seconds": round(self.calibration_seconds, 3)} if self.rates else {}),
                **({"memory_cap": self.memory_cap} if self.memory_cap is not None else {}),
                "cells_per_answer": cells,
                "kv_cache_bytes_estimate": per_cell * cells * self.chosen if per_cell and cells else None,
                "answers": self.sequences, "prompt_tokens_reused": reused, "decode_seconds": round(busy, 3),
                "mean_sequences": round(sequence_seconds / busy, 3) if busy else None}
