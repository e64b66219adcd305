"""Exact-match response cache: SQLite (the gateway's state file) by default, Redis when configured.

The key covers the endpoint, the route's whole definition (so editing the plan never serves an
answer from a model the route no longer uses) and the request body minus transport-only fields
(``stream``, ``stream_options``, ``user``): a streamed and a plain request share one entry. Values
are whole non-streamed responses; a streamed request that hits is replayed as a stream.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from typing import Any, Protocol

from ..core.errors import MissingDependency
from . import state
from .plan import Route
from .writer import Writer

_TRANSPORT = {"stream", "stream_options", "user"}


def is_cacheable(body: dict[str, Any], route: Route) -> bool:
    if route.cache is None or not route.cache.enabled or body.get("n", 1) != 1:
        return False
    if route.cache.nondeterministic:
        return True
    return bool(body.get("temperature", 1.0) == 0)  # the OpenAI default temperature is 1: unset is not deterministic


def route_fingerprint(route: Route) -> str:
    """A hash of the route's whole definition, computed once per plan rather than per request."""
    return hashlib.sha256(json.dumps(route.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def cache_key(path: str, route_name: str, fingerprint: str, body: dict[str, Any]) -> str:
    payload = {"path": path, "route": route_name, "def": fingerprint,
               "body": {k: v for k, v in body.items() if k not in _TRANSPORT}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Cache(Protocol):
    where: str

    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None: ...
    async def aclose(self) -> None: ...


class SqliteCache:
    def __init__(self, read_db: sqlite3.Connection, writer: Writer, where: str) -> None:
        self.db, self.writer, self.where = read_db, writer, where

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = state.cache_get(self.db, key, time.time())
        return json.loads(raw) if raw else None

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        self.writer.cache(key, json.dumps(value, separators=(",", ":")), time.time() + ttl_s)

    async def aclose(self) -> None:
        return None


class RedisCache:
    """Shared by every gateway pointed at the same Redis; entries expire through Redis' own TTL."""

    def __init__(self, url: str) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - the test extra installs it
            raise MissingDependency("a redis:// cache needs the redis package: pip install 'weighbridge[redis]'") from None
        self.client = aioredis.from_url(url)
        self.where = url.split("@")[-1]

    failures = 0  # lookups and stores Redis did not answer: each one a miss, never a failed request

    async def get(self, key: str) -> dict[str, Any] | None:
        import redis

        try:
            raw = await self.client.get("wb:cache:" + key)
        except redis.RedisError:
            self.failures += 1  # the cache is an optimisation: with Redis away it is a miss
            return None
        return json.loads(raw) if raw else None

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        import redis

        try:
            await self.client.set("wb:cache:" + key, json.dumps(value, separators=(",", ":")), px=int(ttl_s * 1000))
        except redis.RedisError:
            self.failures += 1

    async def aclose(self) -> None:
        await self.client.aclose()
