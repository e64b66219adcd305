"""One background thread owns every write the gateway makes: audit records, spend, cache entries.

Writes leave the event loop (a commit never stalls other requests) and are grouped: whatever is
queued when the thread wakes goes into one transaction per database. An audit record can be
awaited, so a response is sent only once its record is committed (``audit.sync``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from typing import Any

from . import state
from .audit import AuditSink

log = logging.getLogger("weighbridge.gateway")
_STOP = object()


def next_batch(q: "queue.Queue[Any] | queue.SimpleQueue[Any]", limit: int = 512) -> list[Any]:
    """Block for one job, then take whatever else is already queued (up to ``limit``): one
    transaction per burst instead of one per job."""
    batch = [q.get()]
    while len(batch) < limit:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            break
    return batch


class Writer:
    def __init__(self, state_db: sqlite3.Connection, sink: AuditSink) -> None:
        self.db = state_db
        self.sink = sink
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.failures = 0
        self.thread = threading.Thread(target=self._run, name="weighbridge-writer", daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def audit(self, record: dict[str, Any], loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future[None] | None:
        fut = loop.create_future() if loop is not None else None
        self.q.put(("audit", record, fut, loop))
        return fut

    def spend(self, key_id: str, period: str, tokens: int, usd: float) -> None:
        self.q.put(("spend", (key_id, period, tokens, usd), None, None))

    def cache(self, key: str, value: str, expires: float) -> None:
        self.q.put(("cache", (key, value, expires), None, None))

    def close(self) -> None:
        self.q.put(_STOP)
        self.thread.join(timeout=30)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = next_batch(self.q)
            if _STOP in batch:
                stop = True
                batch = [b for b in batch if b is not _STOP]
            audits = [b for b in batch if b[0] == "audit"]
            others = [b for b in batch if b[0] != "audit"]
            if others:
                self._state(others)
            if audits:
                self._audit(audits)

    def _state(self, jobs: list[Any]) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            for kind, args, _, _ in jobs:
                (state.add_spend if kind == "spend" else state.cache_put)(self.db, *args)
            self.db.execute("COMMIT")
        except Exception:
            self.failures += 1
            log.exception("gateway state write failed")
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _audit(self, jobs: list[Any]) -> None:
        error: BaseException | None = None
        try:
            self.sink.append([j[1] for j in jobs])
        except Exception as e:
            self.failures += 1
            log.exception("audit write failed")
            error = e
        for _, _, fut, loop in jobs:
            if fut is not None:
                loop.call_soon_threadsafe(_settle, fut, error)


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
