"""The load generator: closed loop (fixed concurrency) and open loop (constant or Poisson arrivals),
swept over levels, warm-up excluded, bounded by request count or duration, stopping at saturation.

Every request streams, so time to first token and inter-token gaps are real; each prompt starts
with a unique prefix so a server's prefix cache cannot flatter the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.errors import BackendError
from ..wire.http import UpstreamError
from ..wire.openai import Accumulator, MalformedResponse, loads, parse_chunk
from ..wire.sse import SSEDecoder, SSEError
from ..core.contention import LoadSampler
from .metrics import SLO, LevelResult, RequestRecord, summarise_level
from .rawhttp import HTTPStatusError, RawClient

_WORDS = ("river stone market engine garden signal paper window harbor planet silver orchard lantern copper "
          "meadow thunder pencil harvest canyon mirror violet anchor ladder compass marble falcon ribbon glacier").split()


def synthetic_prompts(n: int, input_tokens: int, seed: int = 0) -> list[str]:
    """n different prompts of roughly ``input_tokens`` tokens (≈ 1.3 tokens per English word)."""
    rng = random.Random(seed)
    words = max(1, int(input_tokens / 1.3))
    return [f"Request {i}-{rng.randrange(10**9)}: continue this list of words with more words. "
            + " ".join(rng.choice(_WORDS) for _ in range(words)) for i in range(n)]


@dataclass
class Target:
    base_url: str
    model: str
    api_key: str | None = None
    mode: str = "chat"  # chat | completion
    gguf: Any = None  # the model file, when weighbridge serves it (its tokenizer then counts tokens)


async def stream_once(client: RawClient, target: Target, prompt: str, max_tokens: int,
                      intended: int | None = None) -> RequestRecord:
    body: dict[str, Any] = {"model": target.model, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
                            "stream_options": {"include_usage": True}}
    if target.mode == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        path = "/chat/completions"
    else:
        body["prompt"] = prompt
        path = "/completions"
    payload = json.dumps(body).encode()
    rec = RequestRecord(intended=intended, sent=time.perf_counter_ns(), requested_tokens=max_tokens)
    acc = Accumulator()
    decoder = SSEDecoder()
    try:
        async with asyncio.timeout(client.timeout_s), contextlib.aclosing(client.post_stream(path, payload)) as body_in:
            async for data in body_in:
                for sse in decoder.feed(data):
                    payload_text = sse.data
                    if payload_text is None:
                        continue
                    if payload_text.strip() == "[DONE]":
                        acc.done()
                        continue
                    try:
                        event = parse_chunk(loads(payload_text, "event"), chat=target.mode == "chat")
                    except MalformedResponse:
                        raise BackendError("malformed event", kind="malformed_response") from None
                    if event.usage_error is not None:
                        raise BackendError(str(event.usage_error), kind="malformed_response")
                    generated = acc.add(event)
                    if generated:
                        now = time.perf_counter_ns()
                        if rec.first_token is None:
                            rec.first_token = now
                        rec.chunk_times.extend([now] * generated)
    except HTTPStatusError as e:
        rec.error = f"http_{e.status}"
    except TimeoutError:
        rec.error = "timeout"
    except SSEError:
        rec.error = "malformed_response"
    except (OSError, UpstreamError, ValueError):
        rec.error = "connection"
    except BackendError as e:
        rec.error = e.kind
    finally:
        rec.done = time.perf_counter_ns()
    if rec.error is None and not acc.ended:
        rec.error = "truncated"
    rec.text = acc.text + acc.reasoning + "".join(s["arguments"] for _, s in sorted(acc.slots.items()))
    usage = acc.usage
    if usage is not None and usage.completion_tokens is not None:
        rec.output_tokens, rec.prompt_tokens, rec.token_source = usage.completion_tokens, usage.prompt_tokens, "server"
    elif client.count_tokens is not None:
        rec.output_tokens, rec.token_source = client.count_tokens(rec.text), "tokenizer"
    else:
        rec.output_tokens = len(rec.chunk_times)
    return rec


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run_level(client: RawClient, target: Target, *, mode: str, level: float, prompts: list[str],
                    max_tokens: int, requests: int | None, duration_s: float | None, warmup: int, slo: SLO,
                    poisson: bool = False, seed: int = 0, gpu_hour_usd: float | None = None,
                    on_request: Callable[[RequestRecord], None] | None = None,
                    max_error_rate: float = 1.0) -> LevelResult:
    """One level of load. Closed: ``level`` workers send back to back. Open: arrivals at ``level``/s.

    Stops issuing early when, after at least 10 answers, more than ``max_error_rate`` of them failed:
    hammering a saturated server longer tells nothing new."""
    prompt_at = iter(prompts * (1 + (requests or 10_000) // max(1, len(prompts))))
    for _ in range(warmup):  # warm the server and the connection pool; never counted
        await stream_once(client, target, next(prompt_at), max_tokens)
    records: list[RequestRecord] = []
    failed = 0

    def overloaded() -> bool:
        return len(records) >= 10 and failed / len(records) > max_error_rate

    def finished(rec: RequestRecord) -> None:
        nonlocal failed
        failed += int(not rec.ok)
        if on_request:
            on_request(rec)

    deadline = time.perf_counter() + duration_s if duration_s else None
    limit = requests if requests is not None else 10**9
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    if mode == "closed":
        issued = 0

        async def worker() -> None:
            nonlocal issued
            while issued < limit and (deadline is None or time.perf_counter() < deadline) and not overloaded():
                issued += 1
                records.append(await stream_once(client, target, next(prompt_at), max_tokens))
                finished(records[-1])

        await asyncio.gather(*(worker() for _ in range(int(level))))
    else:
        rng = random.Random(seed)
        start_ns = time.perf_counter_ns()
        tasks, offset = [], 0.0
        n = 0
        done: list[RequestRecord] = []
        while n < limit:
            if deadline is not None and start_ns / 1e9 + offset > deadline:
                break
            if len(done) >= 10 and sum(not r.ok for r in done) / len(done) > max_error_rate:
                break
            intended = start_ns + int(offset * 1e9)
            delay = (intended - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(stream_once(client, target, next(prompt_at), max_tokens, intended))
            task.add_done_callback(lambda t: (done.append(t.result()), on_request and on_request(t.result())))
            tasks.append(task)
            n += 1
            offset += rng.expovariate(level) if poisson else 1.0 / level
        records.extend(await asyncio.gather(*tasks))
    wall = time.perf_counter() - t0
    return summarise_level(mode, level, records, wall, _cpu_seconds() - cpu0, slo,
                           level if mode == "open" else None, gpu_hour_usd)


def saturated(result: LevelResult, max_error_rate: float, max_p50_ms: float | None) -> str | None:
    """Why to stop the sweep here, if the server is past its limit."""
    if result.requests and (result.requests - result.ok) / result.requests > max_error_rate:
        return f"error rate {(result.requests - result.ok) / result.requests:.0%} > {max_error_rate:.0%}"
    p50 = result.e2e_ms.get("p50")
    if max_p50_ms is not None and p50 is not None and p50 > max_p50_ms:
        return f"p50 latency {p50:,.0f} ms > {max_p50_ms:,.0f} ms"
    return None


@dataclass
class AutoTune:
    """Search for the highest level that meets an SLO, instead of a fixed list (EvalScope's SLA
    auto-tune is the anchor): double from ``start`` while levels meet it, then bisect between the
    last level that met it and the first that did not, down to ``step`` (1 for concurrency; for a
    rate, 5% of the level). ``meets`` is the rule ``weighbridge cost`` applies to a stored level, so
    the level found is the one cost will use."""

    meets: Callable[[LevelResult], tuple[bool, str]]
    rule: str = ""  # the SLO in words
    slo: Any = None  # the SLO itself, for what is said about the result
    ceiling: float = 256
    start: float = 1
    found: float | None = None
    why: str = ""
    trail: list[tuple[float, bool, str]] = field(default_factory=list)

    def step(self, mode: str, level: float) -> float:
        return 1.0 if mode == "closed" else max(0.05 * level, 0.01)

    def next(self, mode: str) -> float | None:
        """The next level to probe, or None when the search is over (``found`` and ``why`` set)."""
        if not self.trail:
            return self.start
        good = [lv for lv, ok, _ in self.trail if ok]
        bad = [lv for lv, ok, _ in self.trail if not ok]
        low, high = (max(good) if good else None), (min(bad) if bad else None)
        if low is None:
            self.found, self.why = None, f"the first level ({self.trail[0][0]:g}) does not meet it: {self.trail[0][2]}"
            return None
        if high is None:
            if low >= self.ceiling:
                self.found, self.why = low, f"the ceiling ({self.ceiling:g}) meets it: the knee is at or above it"
                return None
            return min(low * 2, self.ceiling)
        if high - low <= self.step(mode, low) + 1e-9:
            self.found = low
            self.why = f"{high:g} does not meet it ({next(w for lv, ok, w in self.trail if lv == high)})"
            return None
        mid = (low + high) / 2
        return float(int(mid)) if mode == "closed" else round(mid, 3)


async def sweep(target: Target, *, mode: str, levels: list[float], input_tokens: int, output_tokens: int,
                requests: int | None, duration_s: float | None, warmup: int, slo: SLO, poisson: bool = False,
                gpu_hour_usd: float | None = None, max_error_rate: float = 0.1, max_p50_ms: float | None = None,
                timeout_s: float = 120.0, on_level: Callable[[LevelResult], None] | None = None,
                on_request: Callable[[float, RequestRecord], None] | None = None,
                prompts: list[str] | None = None, count_tokens: Callable[[str], int] | None = None,
                auto: AutoTune | None = None) -> tuple[list[LevelResult], str | None]:
    """A fixed list of levels (stopping at saturation), or with ``auto`` the levels its search asks
    for; results in the order they ran."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    n_prompts = (requests or 200) + warmup
    n_levels = 24 if auto is not None else max(1, len(levels))  # a search probes at most ~2·log2(ceiling) levels
    if prompts:  # from a suite: cycled, each made unique so a prefix cache cannot serve it
        pool = [f"[{i}] {prompts[i % len(prompts)]}" for i in range(n_prompts * n_levels)]
    else:
        pool = synthetic_prompts(n_prompts * n_levels, input_tokens)
    prompts = pool
    results: list[LevelResult] = []
    stop = None
    client = RawClient(target.base_url, headers, timeout_s)
    client.count_tokens = count_tokens
    sampler = LoadSampler()
    sampler.start()
    try:
        i = 0
        planned = iter(levels)
        while True:
            level = auto.next(mode) if auto is not None else next(planned, None)
            if level is None:
                break
            chunk = [prompts[(i * n_prompts + k) % len(prompts)] for k in range(n_prompts)]  # fresh per level
            t0 = time.monotonic()
            r = await run_level(client, target, mode=mode, level=level, prompts=chunk, max_tokens=output_tokens,
                                requests=requests, duration_s=duration_s, warmup=warmup, slo=slo, poisson=poisson,
                                seed=i, gpu_hour_usd=gpu_hour_usd, max_error_rate=max_error_rate,
                                on_request=(lambda rec, lv=level: on_request(lv, rec)) if on_request else None)
            r.contention = sampler.window(t0, time.monotonic())  # the server's threads and ours count alike
            results.append(r)
            i += 1
            if on_level:
                on_level(r)
            if auto is not None:
                ok, why = auto.meets(r)
                auto.trail.append((level, ok, why))
                continue  # a level past the knee is what the search is looking for, not a reason to stop
            stop = saturated(r, max_error_rate, max_p50_ms)
            if stop:
                break
    finally:
        sampler.stop()
        await client.aclose()
    if auto is not None:
        stop = (f"auto: highest level meeting the SLO {auto.found:g}: {auto.why}" if auto.found is not None
                else f"auto: no level meets the SLO: {auto.why}")
    return results, stop
