"""``concurrency: auto``: the requests in flight to a server that batches, found as the run goes -
the controller on a simulated server first (its clock driven by the test, so every decision is
exact), then the engine against a test double of a batching server with a known capacity."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from weighbridge.core.config import load_config
from weighbridge.eval import adaptive, concurrency
from weighbridge.eval.adaptive import AdaptiveLimit

from .conftest import write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from batching_server import BatchingServer  # noqa: E402  (the test double lives beside the bench that uses it)


def _simulate(limiter: AdaptiveLimit, clock: list[float], *, slots: int, queue: int, service_s: float,
              answers: int, pressure: list[int]) -> list[int]:
    """A server with ``slots`` at once, ``service_s`` each; a request past slots + queue in flight is
    pushed back (the backend retries it). Feeds the controller answer by answer, the clock moving as
    the server's throughput allows; returns the limit after every 50th answer."""
    seen = []
    for i in range(answers):
        limiter.in_flight = limiter.limit  # a closed loop: every place is held (the clock moves only below)
        if limiter.limit > slots + queue:
            pressure[0] += 1
        clock[0] += service_s / min(limiter.limit, slots)  # throughput = min(limit, slots) / service_s
        limiter.done(True, service_s * max(1.0, limiter.limit / slots))  # beyond its slots, requests queue
        if i % 50 == 49:
            seen.append(limiter.limit)
    return seen


@pytest.mark.parametrize("start, queue", [(1, 16), (16, 16), (256, 16), (1, 1000), (256, 1000)])
def test_the_controller_settles_at_the_servers_capacity_from_any_start(monkeypatch, start, queue):
    """With a bounded queue the server pushes back past it; with an unbounded one (vLLM queues every
    request) only the latency says so: from any start the limit settles at the slots, with at most
    half their number waiting (the client needs a few queued to refill a slot the moment it frees)."""
    clock = [0.0]
    monkeypatch.setattr(adaptive.time, "monotonic", lambda: clock[0])
    pressure = [0]
    limiter = AdaptiveLimit(start=start, ceiling=256, pressure=lambda: pressure[0])
    seen = _simulate(limiter, clock, slots=32, queue=queue, service_s=0.1, answers=8000, pressure=pressure)
    settled = seen[-40:]  # the server's 32 slots and a few queued, probing an eighth more, never past what it queues
    assert all(27 <= x <= 48 for x in settled) and 32 <= sorted(settled)[20] <= 48, seen
    assert sorted(settled)[4] >= 32  # not held below the slots (a try of fewer that lost is not repeated every window)
    assert limiter.trace[0] == (0.0, min(start, 256), "start")
    if start == 256 and queue == 16:
        assert any(why.startswith("pressure") for _, _, why in limiter.trace)  # it backed off


def test_a_server_whose_steps_slow_as_its_batch_grows_is_held_near_its_knee_not_starved(monkeypatch):
    """As llama-server --parallel 128 on an H200 measured (bench/gpu/served_knee.sh): each decoding
    step takes longer the more sequences share it, so an answer's latency rises with no queue at all,
    and throughput peaks near 32 in flight. Counting latency in the server's own steps (from the
    time to first token and the gaps between tokens) tells slower steps from a queue: the limit stays
    where throughput is, where counting seconds took it down to 2 (45% of the best)."""
    clock = [0.0]
    monkeypatch.setattr(adaptive.time, "monotonic", lambda: clock[0])
    limiter = AdaptiveLimit(start=4, ceiling=256)
    slots, tokens = 128, 8

    def step_s(active: int) -> float:
        return 0.002 * (1 + active / 2.25 + (active / 32) ** 2)

    def answers_per_s(limit: int) -> float:
        return min(limit, slots) / (tokens * step_s(min(limit, slots)))

    served = []
    for _ in range(6000):
        limit = limiter.in_flight = limiter.limit
        clock[0] += 1 / answers_per_s(limit)
        waited = tokens * max(0.0, limit / slots - 1)  # past its slots, requests wait whole answers
        limiter.done(True, (tokens + waited) * step_s(min(limit, slots)), step_s(min(limit, slots)))
        served.append(answers_per_s(limiter.limit))
    best = max(answers_per_s(n) for n in range(1, 257))
    assert sum(served[-3000:]) / 3000 >= 0.92 * best, limiter.trace
    assert min(n for _, n, _ in limiter.trace[1:]) >= 8, limiter.trace


def test_step_times_from_outside_are_checked_and_one_answer_without_one_turns_the_count_to_seconds():
    from weighbridge.core.types import Generation

    def gen(tokens, decode_ms):
        return dataclasses.replace(Generation.answer_only("x"), completion_tokens=tokens, decode_ms=decode_ms)

    assert concurrency.step_seconds(gen(9, 80.0)) == pytest.approx(0.01)
    for bad in (gen(1, 80.0), gen(None, 80.0), gen(9, 0.0), gen(9, None), gen(9, float("nan")),
                gen(9, float("inf")), gen(9, -5.0), None):
        assert concurrency.step_seconds(bad) is None
    limiter = AdaptiveLimit(start=4, ceiling=64)
    limiter.done(True, 0.08, 0.01)
    limiter.done(False, 0.5, None)  # a failed answer has no step time: it is pressure, not a reason for seconds
    assert limiter._in_steps
    limiter.done(True, 0.08, None)  # an agent's episode, a one-token answer: seconds from now on, for every answer
    limiter.done(True, 0.08, 0.01)
    assert not limiter._in_steps and limiter._best_latency is None


def test_the_controller_never_passes_its_ceiling_and_backs_off_at_once_once_a_round(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(adaptive.time, "monotonic", lambda: clock[0])
    pressure = [0]
    limiter = AdaptiveLimit(start=1, ceiling=12, pressure=lambda: pressure[0])
    seen = _simulate(limiter, clock, slots=1000, queue=0, service_s=0.1, answers=400, pressure=pressure)
    assert max(seen) == 12 and not limiter.slow_start
    before = limiter.limit
    pressure[0] += 1
    limiter.done(True, 0.1)  # the very next answer after a push-back: no waiting for the window's end
    assert limiter.limit == int(before * 0.7) and limiter.trace[-1][2] == "pressure: 1 push-back(s), 0 failed"
    cut = limiter.limit
    pressure[0] += 3  # the rest of the same burst (sent before the back-off): one signal, not four
    limiter.done(True, 0.1)
    limiter.done(False, 0.1)
    assert limiter.limit == cut
    for _ in range(cut // 2):
        limiter.done(True, 0.1)
    limiter.done(False, 0.1)  # a round later an errored job is pressure again
    assert limiter.limit == int(cut * 0.7) and limiter.trace[-1][2] == "pressure: 0 push-back(s), 1 failed"


def test_a_push_back_while_starting_halves_the_limit(monkeypatch):
    """The doubling start may have overshot the server by up to twice: half, not 0.7."""
    clock = [0.0]
    monkeypatch.setattr(adaptive.time, "monotonic", lambda: clock[0])
    pressure = [0]
    limiter = AdaptiveLimit(start=64, ceiling=256, pressure=lambda: pressure[0])
    pressure[0] += 40
    limiter.done(True, 0.1)
    assert limiter.limit == 32 and not limiter.slow_start


def test_concurrency_auto_is_a_setting_and_a_bad_number_is_named(tmp_path):
    from weighbridge.core.errors import ConfigError

    write(tmp_path / "a.yaml", "models:\n  - {name: m, base_url: 'http://127.0.0.1:9/v1', model: m, concurrency: auto}\n")
    spec = load_config(tmp_path / "a.yaml").models[0]
    assert spec.concurrency == "auto" and spec.effective_concurrency == spec.max_concurrency == 256
    write(tmp_path / "b.yaml", "models:\n  - {name: m, base_url: 'http://127.0.0.1:9/v1', model: m, concurrency: 0}\n")
    with pytest.raises(ConfigError, match=r"b.yaml.*concurrency is a number from 1 to 4096, or auto"):
        load_config(tmp_path / "b.yaml")


def test_fake_batching_server_the_engine_fills_it_without_errors_and_prices_the_mean_in_flight(tmp_path):
    from weighbridge.analysis.summary import summarise_run
    from weighbridge.eval.engine import run_bakeoff
    from weighbridge.storage.store import Store

    server = BatchingServer(capacity=8, step_s=0.01, tokens=8, queue=8)  # 100 answers/s at most
    cases = 300
    write(tmp_path / "cases.jsonl", "".join(json.dumps({"id": f"c{i}", "prompt": f"case {i}", "expected": "tok"}) + "\n"
                                           for i in range(cases)))
    with server.running() as base:
        write(tmp_path / "weighbridge.yaml", f"""\
models:
  - {{name: b, base_url: '{base}', model: batching, concurrency: auto, max_retries: 6,
     params: {{max_tokens: 8}}, price: {{gpu_hour_usd: 3.6}}}}
suites: [cases.jsonl]
""")
        cfg = load_config(tmp_path / "weighbridge.yaml")
        store = Store(tmp_path / "wb.db")
        stats = asyncio.run(run_bakeoff(cfg, store, use_cache=False))
    assert stats.errors == 0 and stats.model_calls == cases
    rate = cases / stats.seconds
    print(f"auto: {rate:.1f} answers/s of the server's {server.capacity_rps:.0f}; 503s sent {server.refused}; "
          f"peak decoding {server.peak_active}")
    assert server.peak_active == 8  # it filled every slot
    summary = summarise_run(store, stats.run_id)
    m = summary.models[0]
    facts = m.runtime["adaptive"]
    assert facts["trace"][0][2] == "start" and len(facts["trace"]) >= 2 and facts["ceiling"] == 256
    # at most what the server holds (8 decoding + 8 waiting): a request waiting out a retry after a 503
    # is not in flight for the price (see the test below)
    assert 1 < facts["mean_in_flight"] <= 16, (facts["mean_in_flight"], server.refused)
    assert "mean requests in flight over the run (concurrency auto" in m.cost.formula
    assert m.cost.total_usd == pytest.approx(3.6 * (sum(r.generation.latency_ms for r in summary.rows) / 1000)
                                             / facts["mean_in_flight"] / 3600, rel=0.05)


def test_fake_batching_server_requests_waiting_out_a_retry_are_not_priced_as_in_flight(tmp_path):
    """A start far above the server's size sends a burst of 503s whose retries wait their backoff
    without a place (``_pause``): the hardware is priced with the mean requests in flight, and
    counting those waits in it priced the server's time at a fraction of what it was. The requests
    the engine prices as in flight can only be the ones the server held (its own sum of their time)."""
    from weighbridge.analysis.summary import summarise_run
    from weighbridge.eval.adaptive import AdaptiveLimit
    from weighbridge.eval.engine import Bakeoff
    from weighbridge.storage.store import Store

    server = BatchingServer(capacity=8, step_s=0.01, tokens=8, queue=8)
    write(tmp_path / "cases.jsonl", "".join(json.dumps({"id": f"c{i}", "prompt": f"case {i}", "expected": "tok"}) + "\n"
                                           for i in range(300)))
    with server.running() as base:
        write(tmp_path / "weighbridge.yaml", f"models:\n  - {{name: b, base_url: '{base}', model: batching, "
                                             "concurrency: auto, max_retries: 8, params: {max_tokens: 8}, price: {gpu_hour_usd: 3.6}}\n"
                                             "suites: [cases.jsonl]\n")
        bake = Bakeoff(load_config(tmp_path / "weighbridge.yaml"), Store(tmp_path / "wb.db"), use_cache=False)

        async def go():
            await bake.prepare()
            backend = bake.backends["b"]
            bake.adaptive["b"] = AdaptiveLimit(start=128, ceiling=256, pressure=lambda: backend.pushbacks)
            return await bake.run(bake.create_run())

        stats = asyncio.run(go())
    assert stats.errors == 0 and server.refused >= 50  # a burst of push-backs, every one retried
    facts = bake.store.run_models(stats.run_id)[0]["runtime"]["adaptive"]
    priced_area = facts["mean_in_flight"] * stats.seconds  # request-seconds the price counts
    assert priced_area <= server.held_s * 1.25 + 1.0, (priced_area, server.held_s, server.refused)
    cost = summarise_run(bake.store, stats.run_id).models[0].cost  # the hardware priced for the run's own time
    assert "mean requests in flight" in cost.formula and cost.total_usd == pytest.approx(3.6 * stats.seconds / 3600,
                                                                                         rel=0.1)


@pytest.mark.parametrize("slots, expect", [
    (8, (16, "auto", None)),  # several slots: auto, up to twice them (past them requests only wait)
    (1, (1, None, "one slot")),  # one slot: one at a time, so no latency counts a wait in its queue
    ("8", (4, None, None)), (True, (4, None, None)), (0, (4, None, None)), (10**9, (4, None, None)),
    (3.5, (4, None, None)), (None, (4, None, None)),  # not a slot count: the plain default
])
def test_fake_upstream_llama_server_slots_set_the_default_concurrency(slots, expect):
    """llama.cpp's llama-server says its --parallel as total_slots in /props (a fake one here: the
    real binary is not on PyPI; on an H200 its 128 slots served 38% more at 32 in flight than at 4)."""
    from weighbridge.backends.openai import OpenAIBackend
    from weighbridge.core.config import ModelSpec
    from weighbridge.eval.concurrency import choose_concurrency

    from .fake_upstream import FakeUpstream

    props = {"default_generation_settings": {"n_ctx": 2048}, **({"total_slots": slots} if slots is not None else {})}
    with FakeUpstream(lambda h, body, n: None, gets={"/props": props}) as up:
        up.httpd.models = ["q"]
        spec = ModelSpec(name="q", backend="openai", base_url=up.base_url, model="q")
        backend = OpenAIBackend(spec)

        async def go():
            try:
                await backend.preflight()
            finally:
                await backend.aclose()

        asyncio.run(go())
    limit, limiter, warning = choose_concurrency("q", spec, backend)
    assert backend.server_kind == "llama.cpp" and backend.manifest()["server_slots"] == (
        slots if expect[1] == "auto" or expect[2] else None)
    assert limit == expect[0] and (limiter is not None) == (expect[1] == "auto")
    assert (warning is not None and expect[2] in warning) if expect[2] else warning is None
    if limiter is not None:
        assert limiter.ceiling == 16 and limiter.limit == 4


def test_a_latency_that_grows_with_load_but_is_not_a_queue_does_not_hold_the_limit_below_the_knee(monkeypatch):
    """On a busy 2-core machine the client's own work makes every answer slower as more are in flight
    while throughput still rises: the latency rule reads a queue that is not there. A cut it calls
    for is judged by the window after it and undone when it lost throughput, and the same latency does
    not call for it again (before, the limit was cut below the knee and every later try of more was
    held against the best seen above it, so none paid: held at 83% of this server's throughput, 61% of the bench's)."""
    clock = [0.0]
    monkeypatch.setattr(adaptive.time, "monotonic", lambda: clock[0])
    limiter = AdaptiveLimit(start=1, ceiling=256)

    def latency(limit: int) -> float:  # the client's overhead grows with load; the server caps at 200/s
        return max(0.08 + 0.002 * limit, limit / 200)

    served = []
    for _ in range(8000):
        limit = limiter.in_flight = limiter.limit
        clock[0] += latency(limit) / limit  # Little's law: throughput = in flight / latency
        limiter.done(True, latency(limit))
        served.append(limiter.limit / latency(limiter.limit))
    assert sum(served[-4000:]) / 4000 >= 0.95 * 200, limiter.trace


def test_a_job_waiting_for_a_place_is_woken_alone_not_with_every_other_waiter():
    """A bakeoff awaits the limiter with every job at once. A condition that woke them all on every
    answer cost half a million wake-ups for 1,000 jobs at one place: the client's own CPU, which
    then slowed the answers it was measuring."""
    class CountingLoop(asyncio.SelectorEventLoop):
        scheduled = 0

        def call_soon(self, *args, **kwargs):  # type: ignore[override]
            CountingLoop.scheduled += 1
            return super().call_soon(*args, **kwargs)

    async def main() -> list[int]:
        limiter = AdaptiveLimit(start=1, ceiling=1)
        order = []

        async def job(i: int) -> None:
            async with limiter:
                order.append(i)
                await asyncio.sleep(0)

        await asyncio.gather(*(job(i) for i in range(1000)))
        assert limiter.in_flight == 0
        return order

    loop = CountingLoop()
    try:
        order = loop.run_until_complete(main())
    finally:
        loop.close()
    assert order == list(range(1000))  # first come, first served
    assert CountingLoop.scheduled < 20 * 1000, CountingLoop.scheduled


def test_a_waiter_cancelled_after_it_was_woken_passes_its_place_on():
    async def main() -> None:
        limiter = AdaptiveLimit(start=1, ceiling=4)
        entered = []

        async def job(i: int) -> None:
            async with limiter:
                entered.append(i)

        await limiter.__aenter__()  # the one place is held
        second, third, fourth = (asyncio.ensure_future(job(i)) for i in (2, 3, 4))
        await asyncio.sleep(0)
        fourth.cancel()  # cancelled while it waits: it leaves the queue
        await asyncio.sleep(0)
        await limiter.__aexit__(None, None, None)  # the place goes to the second ...
        second.cancel()  # ... cancelled before it ran: the place goes on to the third
        await asyncio.gather(second, third, fourth, return_exceptions=True)
        assert entered == [3] and limiter.in_flight == 0 and not limiter._waiters

    asyncio.run(main())


def test_a_request_pushed_back_gives_its_place_back_while_it_waits_to_retry_and_retakes_it_first():
    """Holding its place through a 0.25-0.75 s backoff, a burst of 503s left the server idle while the
    pushed-back requests slept (from a start of 128 on a server of 32: 92-94% of it, now 94-95%)."""
    from weighbridge.wire.retry import wait_before_retry

    async def main() -> None:
        limiter = AdaptiveLimit(start=1, ceiling=1)
        order = []
        parked = asyncio.Event()

        async def retried() -> None:
            async with limiter:
                order.append("first try")
                parked.set()
                await wait_before_retry(0.05)  # what the openai backend awaits after a 503
                order.append("retry")
                limiter.done(True, 0.06, None)  # its latency counts the time it held a place, not the wait

        async def other(name: str) -> None:
            async with limiter:
                order.append(name)
                await asyncio.sleep(0.1)  # longer than the retry's wait: it comes back while "a" runs

        first = asyncio.ensure_future(retried())
        await parked.wait()
        waiting = [asyncio.ensure_future(other(n)) for n in ("a", "b", "c", "d")]
        await asyncio.gather(first, *waiting)
        # "a" ran while the first request waited; the retry came back ahead of b, c, d
        assert order[:3] == ["first try", "a", "retry"], order
        assert limiter.in_flight == 0 and not limiter._waiters
        assert limiter._best_latency is not None and limiter._best_latency < 0.02  # 0.06 s, less the 0.05 s parked

    asyncio.run(main())


def test_a_request_cancelled_while_it_waits_to_retry_leaves_the_count_right():
    from weighbridge.wire.retry import wait_before_retry

    async def main() -> None:
        limiter = AdaptiveLimit(start=2, ceiling=2)

        async def retried() -> None:
            async with limiter:
                await wait_before_retry(10)

        task = asyncio.ensure_future(retried())
        await asyncio.sleep(0.01)
        assert limiter.in_flight == 0  # parked: its place is free
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert limiter.in_flight == 0 and not limiter._waiters
        async with limiter:  # and the limiter still works
            assert limiter.in_flight == 1
        await wait_before_retry(0)  # outside a limiter: a plain pause

    asyncio.run(main())
