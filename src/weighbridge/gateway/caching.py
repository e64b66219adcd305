"""The cache stage: whether a request may be answered from the cache, the lookup, and the store.

Never stored: an answer to, or keyed on, a prompt whose audit copy masks PII, and an answer in which
the model wrote PII - caching either would keep what the audit log is not allowed to keep.
"""

from __future__ import annotations

from typing import Any

from .cache import Cache, cache_key, is_cacheable, route_fingerprint
from .call import Call
from .metrics import Metrics
from .plan import Plan
from .screen import Screen, found_pii


class Caching:
    def __init__(self, cache: Cache, plan: Plan, metrics: Metrics, screen: Screen) -> None:
        self.cache, self.metrics, self.screen = cache, metrics, screen
        self.fingerprints = {n: route_fingerprint(r) for n, r in plan.routes.items()}

    def key(self, call: Call) -> str | None:
        """The request's cache key, or None when its answer must not come from or go to the cache."""
        if not is_cacheable(call.body, call.routed):
            return None
        if found_pii(call.events):  # never store an answer to, or keyed on, text the audit copy masks
            self.metrics.inc("weighbridge_cache_total", route=call.route_name, result="skipped_pii")
            return None
        return cache_key(call.path, call.route_name, self.fingerprints[call.route_name], call.body)

    async def lookup(self, call: Call, ckey: str) -> dict[str, Any] | None:
        """The cached response (marking the call a hit), or None."""
        cached = await self.cache.get(ckey)
        self.metrics.inc("weighbridge_cache_total", route=call.route_name, result="hit" if cached else "miss")
        if cached is None:
            return None
        call.cache_hit, call.upstream = True, cached.get("upstream")
        response: dict[str, Any] = cached["response"]
        return response

    async def store(self, call: Call, ckey: str, data: dict[str, Any]) -> None:
        self.screen.redacted_answer(call)
        if call.answer_pii:  # the model wrote PII: caching it would store what the audit copy masks
            self.metrics.inc("weighbridge_cache_total", route=call.route_name, result="skipped_pii")
            return
        cache = call.routed.cache
        assert cache is not None, "only a route with a cache has a cache key"
        await self.cache.put(ckey, {"response": data, "upstream": call.upstream}, cache.ttl_s)
