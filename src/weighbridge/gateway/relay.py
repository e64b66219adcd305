"""Relaying a stream to the client event by event, and making sure its ending is accounted for.

A stream that breaks after its first content event ends with an error event, never as a silently
short answer; one that goes silent longer than the route's first-token timeout, or runs past its
total timeout, is cut off the same way. The response block list is checked as the answer grows.
However the stream ends - finished, broken, the client gone, or never started - the call gets its
audit record and its settlement exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse

from ..core.scrub import scrub, scrub_obj
from ..wire.http import UpstreamError
from .accounting import tier
from .call import Call
from .caching import Caching
from .plan import Upstream
from .record import Recorder
from .screen import Screen
from .stream import DONE, answer_text, event
from .upstreams import OpenStream, Upstreams

log = logging.getLogger("weighbridge.gateway")


class Relay(StreamingResponse):
    """A streamed answer whose ending is always accounted for: ``on_end`` runs once the response is
    over, whether the stream ended, broke, the client went away, or the body was never started (an
    async generator that never started never runs its ``finally``)."""

    def __init__(self, content: AsyncIterator[bytes], on_end: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_end = [on_end]

    def then(self, fn: Callable[[], None]) -> None:
        self._on_end.append(fn)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._send_watching(receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            for fn in self._on_end:
                try:
                    fn()
                except Exception:  # noqa: BLE001 - one failed ending must not skip the others
                    log.exception("finishing a streamed response failed")

    async def _send_watching(self, receive: Any, send: Any) -> None:
        """Send the stream while a watcher waits for the client to leave; its leaving cancels the
        sending at once, so the upstream stops being read (and generating for nobody). Starlette's
        own streaming response does the same with an anyio task group, which cost ~0.15 ms of CPU a
        stream on this machine (bench/gateway_overhead.py); one plain task and a callback do it here."""
        sending = asyncio.current_task()
        assert sending is not None
        streaming, gone = True, False

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        def left(watcher: asyncio.Future[None]) -> None:
            nonlocal gone
            if streaming and not watcher.cancelled() and watcher.exception() is None:
                gone = True
                sending.cancel()

        watcher = asyncio.ensure_future(watch())
        watcher.add_done_callback(left)
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not gone or sending.uncancel() > 0:  # cancelled from outside as well: that goes on
                raise
        except OSError:  # a server that says the client left by failing the send (ASGI 2.4)
            pass
        finally:
            streaming = False
            watcher.cancel()


class StreamRelay:
    def __init__(self, upstreams: Upstreams, screen: Screen, caching: Caching, recorder: Recorder) -> None:
        self.upstreams, self.screen, self.caching, self.recorder = upstreams, screen, caching, recorder

    def response(self, call: Call, up: Upstream, opened: OpenStream, deadline: float, ckey: str | None,
                 t: float, headers: dict[str, str]) -> Relay:
        return Relay(self._relay(call, up, opened, deadline, ckey, t), lambda: self._abandoned(call, up, opened, t),
                     media_type="text/event-stream", headers=headers)

    async def _relay(self, call: Call, up: Upstream, opened: OpenStream, deadline: float, ckey: str | None,
                     t: float) -> AsyncIterator[bytes]:
        """The stream, event by event; its audit record and settlement once it ends, however it ends
        (a client that goes away is handled by ``_abandoned``, which ``Relay`` always calls)."""
        acct, chunks = opened.acct, opened.chunks
        problem: str | None = None
        if opened.held:  # what arrived together is sent together: one write, not one per event
            yield b"".join(opened.held)
        screening = self.screen.screens_answers()  # read once: the plan does not change mid-stream
        passes_thinking = call.routed.reasoning == "pass"  # what the client sees is what the block list checks
        try:
            silence = call.routed.first_token_timeout_s
            while not acct.stopped:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    async with asyncio.timeout(min(remaining, silence)):
                        chunk = await chunks.__anext__()
                except TimeoutError:
                    if remaining > silence:
                        problem = f"the upstream went silent for {silence:g} s mid-stream"
                    raise
                forward = acct.feed(chunk)
                if forward:
                    yield b"".join(forward)
                if screening and self.screen.answer_blocked(acct.text, acct.reasoning if passes_thinking else ""):
                    call.events["block.response"] += 1
                    acct.finish_reason = "content_filter"
                    yield event({"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]})
                    acct.done = True
        except StopAsyncIteration:
            pass
        except TimeoutError:
            problem = problem or "the route's total timeout passed mid-stream"
        except UpstreamError as e:
            problem = f"upstream stream broke: {e}"
        if acct.done and problem is None and acct.error is None:  # read the body's end so the connection can be reused
            try:
                async with asyncio.timeout(0.5):
                    async for _ in chunks:
                        pass
            except (TimeoutError, UpstreamError):
                pass
        opened.resp.close()
        if problem is None and acct.malformed is not None:
            problem = f"upstream sent a malformed event mid-stream: {acct.malformed[:200]}"
        if problem is None and acct.error is not None:
            problem = f"upstream sent an error mid-stream: {acct.error[:200]}"
        if problem is None and not acct.done:
            problem = "upstream stream broke: it ended before [DONE]"
        data = scrub_obj(acct.response())  # what the cache may keep: our secrets masked, as the client got it
        call.answer = answer_text(data)  # text and tool calls: both are audited and checked
        call.reasoning = acct.reasoning  # apart: audited redacted as its own field, never cached
        tier(call, up, acct.usage, acct.usage_error, call.answer, t, call.reasoning)
        if problem:  # never let a cut-off answer pass for a whole one
            call.status, call.code = 502, "upstream_stream_broken"
            self.upstreams.fail(call, up, "broke mid-stream")
            await self.recorder.write(call)
            yield event({"error": {"message": scrub(problem), "type": "upstream_error", "param": None,
                                   "code": "upstream_stream_broken"}})
            return
        if ckey is not None and acct.finish_reason not in (None, "content_filter") and not call.usage_invalid:
            await self.caching.store(call, ckey, data)
        failed = await self.recorder.write(call)
        yield failed or DONE

    def _abandoned(self, call: Call, up: Upstream, opened: OpenStream, t: float) -> None:
        """The relay is over: if it never reached its record (the client went away, or the response
        was never started) account for what was generated, without awaiting."""
        opened.resp.close()
        if call.finished:
            return
        data = opened.acct.response()
        call.status, call.code, call.answer = 499, "client_closed", answer_text(data)
        call.reasoning = opened.acct.reasoning
        if not any(t_["upstream"] == up.name for t_ in call.tiers):
            tier(call, up, opened.acct.usage, opened.acct.usage_error, call.answer, t, call.reasoning)
        self.recorder.abandon(call)
