"""How many requests to keep in flight to a server that batches, found while the bakeoff runs.

vLLM, SGLang and TGI reach their throughput at tens to hundreds of concurrent requests; a fixed 4
leaves them mostly idle, and too high a number overloads a small server into 503s and timeouts.
``concurrency: auto`` adapts instead, the way TCP finds a path's capacity:

- **latency in steps**: an answer's latency is counted in the server's own decoding steps (divided
  by its mean gap between tokens), so that a step that slows as more sequences share it - every
  real server's does, llama-server's on an H200 enough that throughput peaked at 32 in flight with
  128 slots - reads as what it is, not as a queue; answers without a step time (not streamed, one
  token, an agent's episode) count in seconds;
- **throughput by Little's law**: a window's throughput is the requests it kept in flight over the
  mean latency of those sent under its limit; a window is complete once that many were answered
  (answers sent before the limit changed would mix two limits into one figure);
- **start**: double the limit every round (a window of as many answers as the limit) while the
  window's throughput rises by at least 5%, nothing pushed back, and unless the window's median
  latency passed 1.5 times the best seen while the doubled limit did not raise throughput by half
  (requests have begun to queue in the server: its slots are full - the way HyStart leaves TCP's
  slow start on delay before a loss - and the limit is cut to the server's share with a quarter
  queued); a doubling that lowered throughput with nothing queued (past the knee) goes back to the
  best limit; after that a window is twice the limit, at least 16 answers, and half a second;
- **then probe**: once throughput stops rising, try an eighth more in flight (one at least, never up
  to a limit the server pushed back at in the last eight windows) and keep it only if it beat the
  window before it by 5% (not the best ever seen: one measured above a cut would make every later
  try look unpaid); then try 15% fewer and keep that while it is within 2% of the best throughput
  seen (a full server answers as fast with less queued, so the latencies a bakeoff reports are not
  inflated by its own queue; one past its knee answers faster); each failed try of fewer doubles
  the windows held before the next;
- **back off** on pressure - a 429 or 503 the backend saw (even one it retried), a connection
  failure, a timeout, an errored job - at once, not at the window's end, and once a round: to half
  while starting (the doubling may have overshot by that much), to 0.7 after (CUBIC's factor: the
  limit was near the server's size), and the window after it is not judged; a request pushed back
  gives its place back while it waits to retry (``_pause``) and retakes one ahead of those not yet
  sent; and when the window's median latency passed
  twice the best seen without any throughput gained (requests queue in the server), to the limit
  that would leave a quarter of the server's share queued (the client needs a few waiting to refill
  a slot the moment it frees);
- **every cut by latency is judged** by the window after it: undone when it lost more than 2% of
  the throughput before it, and the latency that called for it does not call again (on a busy
  machine the client's own work slows answers as load grows: a latency, not a queue);
- never above ``ceiling`` nor below 1.

Every change is kept with its time (``trace``): the concurrency actually used over time, stored with
the run; the hardware cost is priced with the time-weighted mean of the requests actually in flight.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType

from ..wire.retry import PAUSE_HOOK

GROWTH = 1.05  # a window must beat the best throughput by this much for a larger limit to count as paying
MIN_WINDOW_S = 0.5  # after the start, a window lasts this long at least: a server's step (10-50 ms) makes a
# shorter window's throughput too coarse to judge a 2% difference
_PARKED_S: ContextVar[float] = ContextVar("weighbridge_parked_s", default=0.0)  # this job's retry waits so far
QUIET_WINDOWS = 8  # windows without pressure after which the limit that was pushed back may be tried again


@dataclass
class AdaptiveLimit:
    start: int = 4
    ceiling: int = 256
    pressure: Callable[[], int] = lambda: 0  # the backend's count of push-backs seen so far (monotonic)
    limit: int = 0
    slow_start: bool = True
    in_flight: int = 0
    trace: list[tuple[float, int, str]] = field(default_factory=list)  # (seconds since start, limit, why)

    def __post_init__(self) -> None:
        self.limit = max(1, min(self.start, self.ceiling))
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._t0 = time.monotonic()
        self._window_start = self._t0
        self._window: list[tuple[bool, float, float | None, bool]] = []  # (ok, latency s, step s, sent since the
        # limit last changed) since the last decision
        self._changed_at = self._t0
        self._area, self._area_at = 0.0, self._t0  # requests in flight × seconds since the window began
        self._fresh = 0  # answers in the window sent since the limit changed: a window is that many
        self._in_steps = True  # latencies counted in the server's steps (every answer so far had its step time)
        self._best_limit = self.limit  # the limit of the best throughput while starting
        self._pressure_at_start = self.pressure()
        self._best_tput = 0.0
        self._best_latency: float | None = None
        self._probe: tuple[int, float, str, float] | None = None  # (the limit before a probe or a cut, its
        # throughput and latency, up/down/cut)
        self._next = "up"  # the direction of the next probe
        self._pushed_at: int | None = None  # the limit the server last pushed back at: more stays below it
        self._quiet = 0  # windows since that push-back
        self._hold = self._hold_for = 0  # windows to hold before trying fewer again, and how many the last time
        self._settling = False  # the next window is not judged (see _back_off)
        self._since_cut = 1 << 30  # answers since the last back-off: one back-off a round (none yet)
        self.trace.append((0.0, self.limit, "start"))

    async def __aenter__(self) -> "AdaptiveLimit":
        await self._take()
        PAUSE_HOOK.set(self._pause)  # this job's retries wait through _pause (the context is the job's task)
        _PARKED_S.set(0.0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        PAUSE_HOOK.set(None)
        self._held(-1)
        self._wake()

    async def _take(self, front: bool = False) -> None:
        """A place: at once if one is free and nobody waits, else in turn (``front``: ahead of everyone,
        for a request that held one before its retry). A queue of waiters, each woken alone when a
        place frees: a bakeoff awaits here with every one of its jobs at once, and a condition
        notifying all of them on every answer cost the client more CPU than the answers did -
        thousands of wake-ups an answer - and slowed what it measured."""
        if self.in_flight < self.limit and not self._waiters:
            self._held(1)
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._waiters.appendleft if front else self._waiters.append)(waiter)
        try:
            await waiter  # the place is ours once it is set: ``in_flight`` counts it already
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # woken, then cancelled before it ran: pass it on
                self._held(-1)
                self._wake()
            elif waiter in self._waiters:  # (a cancelled one may have been passed over already)
                self._waiters.remove(waiter)
            raise

    async def _pause(self, seconds: float) -> None:
        """A retry's wait after a push-back, without its place: the limit bounds the requests at the
        server, and one parked for up to a few seconds is not there (holding it, a burst of 503s
        left the server idle while the pushed-back requests slept). The time parked is not the
        answer's latency: the window's figures count the time places were held."""
        t0 = time.monotonic()
        self._held(-1)
        self._wake()
        holding = False
        try:
            await asyncio.sleep(seconds)
            await self._take(front=True)
            holding = True
        finally:
            if not holding:  # cancelled while parked: hold it again, for the exit that follows to give back
                self._held(1)
            _PARKED_S.set(_PARKED_S.get() + time.monotonic() - t0)

    def _held(self, change: int) -> None:
        """The places held change: the time they were held so far is added up first (Little's law
        turns it into the window's throughput)."""
        now = time.monotonic()
        self._area += self.in_flight * (now - self._area_at)
        self._area_at = now
        self.in_flight += change

    def _wake(self) -> None:
        """Hand free places to the longest waiting, in order."""
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._held(1)

    def facts(self, busy_s: float, span_s: float) -> dict[str, object]:
        """What the run stores: the start, ceiling and last limit, the changes (the most recent 500), and
        the mean requests in flight (their summed latencies over the span they covered) that prices it."""
        return {"start": self.start, "ceiling": self.ceiling, "final": self.limit, "trace": self.trace[-500:],
                "mean_in_flight": round(busy_s / span_s, 3) if span_s > 0 else None}

    @property
    def window_size(self) -> int:
        """Answers per decision: one round of the limit while starting (a round at 1 in flight is slow:
        the ramp must be quick); after, two rounds and at least 16 (one is too noisy to judge a probe)."""
        return self.limit if self.slow_start else max(2 * self.limit, 16)

    def done(self, ok: bool, latency_s: float, step_s: float | None = None) -> None:
        """One answer came back (or failed): back off at once on pressure, else decide once a window is
        complete. ``step_s``, the answer's mean gap between tokens, puts its latency in the server's
        own steps: a step that slows as the batch grows then reads as what it is, not as a queue (an
        answer without one - non-streamed, one token, an agent's episode - turns the count to seconds
        for good, since one window must not mix the two; a failed answer has none and changes nothing)."""
        if ok and self._in_steps and not (step_s is not None and math.isfinite(step_s) and step_s > 0):
            self._in_steps, self._best_latency = False, None
        fresh = time.monotonic() - latency_s >= self._changed_at  # sent under the limit as it is now
        held = max(0.0, latency_s - _PARKED_S.get())  # less its retries' waits without a place
        self._window.append((ok, held, step_s, fresh))
        self._fresh += fresh
        self._since_cut += 1
        pushed = self.pressure() - self._pressure_at_start
        if pushed or not ok:
            self._pressure_at_start += pushed
            if self._since_cut >= max(1, self.limit // 2):
                self._back_off(pushed, int(not ok))
            # else the push-backs of the burst the last back-off answered (sent before it): one signal, once
            return
        if self._fresh >= self.window_size and (
                self.slow_start or time.monotonic() - self._window_start >= MIN_WINDOW_S):
            self._decide()

    def _back_off(self, pushed: int, failed: int) -> None:
        factor = 0.5 if self.slow_start else 0.7
        why = f"pressure: {pushed} push-back(s), {failed} failed"
        self.slow_start, self._probe, self._next = False, None, "down"
        self._best_tput = 0.0  # what the server can carry is to be measured again below the new limit
        self._settling = True  # ... once the retries of what it pushed back are through: not the next window
        self._since_cut = 0
        self._next_window()
        self._pushed_at, self._quiet = self.limit, 0
        self._set(int(self.limit * factor), why)

    def _set(self, limit: int, why: str) -> None:
        limit = max(1, min(self.ceiling, limit))
        if limit != self.limit:
            self.limit, self._changed_at = limit, time.monotonic()
            self._wake()  # a higher limit lets waiters in now, not at the next answer
            self.trace.append((round(time.monotonic() - self._t0, 3), limit, why))
            if len(self.trace) > 10_000:
                del self.trace[1:5_000]  # keep the start and the recent half: a run of millions stays bounded

    def _next_window(self) -> tuple[list[tuple[bool, float, float | None, bool]], float]:
        """Close the window and start the next at this instant (one clock for its length and for the
        places held over it): its answers, and the mean requests in flight over it."""
        self._held(0)
        elapsed = max(self._area_at - self._window_start, 1e-6)
        window, in_flight = self._window, self._area / elapsed
        self._window, self._fresh, self._area, self._window_start = [], 0, 0.0, self._area_at
        return window, in_flight

    def _decide(self) -> None:
        window, in_flight = self._next_window()
        if self._settling:  # the first window after a back-off: the pushed-back requests come back in it
            # ahead of the rest, and the estimate would be anything
            self._settling = False
            return
        # the throughput this limit gives, by Little's law: the requests it keeps in flight (fewer where
        # the run had too few left to fill it) over the latency of those sent under it. Answers counted
        # over the window would mix in those sent before it changed: after a doubling the old half comes
        # back fast and the gain reads larger than it is; after a cut the old queue drains and the loss
        # reads smaller
        sent = [lat for _, lat, _, new in window if new] or [lat for _, lat, _, _ in window]
        tput = min(self.limit, in_flight) / max(statistics.fmean(sent), 1e-6)
        # in steps, every answer that came back has its step time (one without turned the count to seconds);
        # the latency is that of the answers sent under this limit (those sent before it changed say
        # nothing of it: after a doubling, half the window was sent at the old limit)
        fresh = [(lat, step) for ok, lat, step, new in window if ok and new]
        latencies = [lat / step if self._in_steps and step else lat
                     for lat, step in fresh or [(lat, step) for ok, lat, step, _ in window if ok]]
        if not latencies:
            return  # only failures: the back-off they caused decides, not this window
        latency = statistics.median(latencies)
        if self._best_latency is None or latency < self._best_latency:
            self._best_latency = latency
        queued = latency > 1.5 * self._best_latency
        probe, self._probe = self._probe, None
        self._quiet += 1
        if self._quiet >= QUIET_WINDOWS:
            self._pushed_at = None
        if self.slow_start:
            self._starting(tput, latency, queued)
        elif probe is not None:
            self._judge(probe, tput, latency)
        elif tput >= self._best_tput * GROWTH:
            self._best_tput = tput
            self._up(tput, f"throughput rose to {tput:.1f}/s")
        elif latency > 2 * self._best_latency:  # requests queue in the server: shrink by the queue measured,
            # leaving a quarter of the server's share waiting
            self._cut(tput, latency, "over twice the best without more throughput")
        elif self._next == "down" and self._hold:
            self._hold -= 1
        elif self._next == "down" or self.limit >= self._top():
            self._down(tput)
        else:
            self._up(tput, "probing more")

    def _starting(self, tput: float, latency: float, queued: bool) -> None:
        """While starting: double until a window gains less than 5%, the latency says requests queue,
        or throughput fell."""
        full = queued and tput < self._best_tput * 1.5  # the latency grew and a doubled limit did not pay half again
        if tput >= self._best_tput * GROWTH and not full:
            self._best_tput, self._best_limit = tput, self.limit
            self._set(self.limit * 2, f"throughput rose to {tput:.1f}/s")
            return
        self.slow_start = False
        fell, before = tput < self._best_tput, self._best_tput
        self._best_tput = max(self._best_tput, tput)
        if full:  # the doubling passed the server's slots: back to them, a quarter queued - judged against the
            # limit before the doubling (the doubled window's own figure reads high: the first answers sent
            # under it found the earlier ones half done ahead of them)
            self._cut(min(tput, before), latency, "1.5 times the best: slots full")
        elif fell:  # past the knee with nothing queued (each step slower with more sharing it): back to it
            self._set(self._best_limit, f"throughput fell at {self.limit} ({tput:.1f}/s against {before:.1f}/s)")

    def _judge(self, probe: tuple[int, float, str, float], tput: float, latency: float) -> None:
        """The window after a probe (or a cut by latency): keep what paid, else go back."""
        before, before_tput, kind, before_latency = probe
        if kind == "up":  # held against the window before it, not the best ever seen: a best measured at a
            # higher limit before a cut would make every later try of more look as if it did not pay
            if tput >= before_tput * GROWTH:
                self._best_tput = max(self._best_tput, tput)
                self._up(tput, f"throughput rose to {tput:.1f}/s")
            else:  # more in flight did not pay: back, then try fewer
                self._set(before, f"no gain at {self.limit} ({tput:.1f}/s)")
                self._next = "down"
            return
        # fewer in flight (a try, or a cut by latency): kept while as fast as before - against the best seen
        # for a try (noise cannot ratchet the limit down), against the window before it for a cut (it
        # followed a change of regime)
        if tput >= (before_tput if kind == "cut" else self._best_tput) / 1.02:
            self._best_tput = max(self._best_tput, tput)
            self._hold_for = 0
            if kind == "down":
                self._down()
            return
        self._set(before, f"slower at {self.limit} ({tput:.1f}/s against {before_tput:.1f}/s)")
        self._next = "up"
        if kind == "cut":  # the latency that called for it was not a queue (the client's own load, say):
            # the same latency does not call for it again
            assert self._best_latency is not None
            self._best_latency = max(self._best_latency, before_latency / 1.5)
        # each failed try of fewer doubles the windows held before the next (a settled limit is not pulled
        # below the server's slots every few windows)
        self._hold_for = min(16, max(1, 2 * self._hold_for))
        self._hold = self._hold_for

    def _cut(self, tput: float, latency: float, why: str) -> None:
        """To the limit that leaves a quarter of the server's share queued; judged by the next window."""
        limit = self._unqueued(latency)
        if limit < self.limit:
            self._probe = (self.limit, tput, "cut", latency)
            self._set(limit, f"latency {self._latency_text(latency)}, {why}")

    def _up(self, tput: float, why: str) -> None:
        step = self._step()
        if step:
            self._probe = (self.limit, tput, "up", 0.0)
            self._set(self.limit + step, why)

    def _latency_text(self, latency: float) -> str:
        return f"{latency:.1f} steps" if self._in_steps else f"{latency * 1000:.0f} ms"

    def _unqueued(self, latency: float) -> int:
        """The limit whose queue in the server is a quarter of its share: the latency over the best
        seen is the share of the limit that waits."""
        assert self._best_latency is not None
        return int(self.limit * self._best_latency / latency * 1.25)

    def _step(self) -> int:
        """An eighth more (one at least), never up to the limit the server last pushed back at."""
        return max(0, min(max(1, self.limit // 8), self._top() - self.limit))

    def _top(self) -> int:
        return self.ceiling if self._pushed_at is None else min(self.ceiling, self._pushed_at - 1)

    def _down(self, tput: float | None = None) -> None:
        """Try fewer in flight: a server that is full answers as fast with less queued."""
        fewer = max(1, min(self.limit - 1, int(self.limit * 0.85)))
        if fewer == self.limit:
            self._next = "up"
            return
        self._probe = (self.limit, tput if tput is not None else self._best_tput, "down", 0.0)
        self._set(fewer, "probing fewer")
