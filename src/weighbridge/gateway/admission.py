"""Admission: who is calling (the key), how often (its rate), how many of its requests may be in
flight at once, and the budget a request holds while it runs.

A request reserves the most it can legitimately cost before any upstream is called - the whole body
in bytes as prompt tokens (byte-level tokenizers never make more tokens than bytes; tools and
earlier tool calls are prompt too) plus the template's overhead, plus ``max_tokens``, at the dearest
upstream of the route, once per cascade tier - so concurrent requests cannot overspend a budget
between them. Settlement (accounting) replaces the reservation with what was used.
"""

from __future__ import annotations

from collections import Counter

from . import state
from .auth import Denied, Guard
from .call import Call
from .plan import Plan


class Admission:
    def __init__(self, guard: Guard, plan: Plan) -> None:
        self.guard, self.plan = guard, plan
        self.key_in_flight: Counter[str] = Counter()

    def key_id(self, authorization: str | None) -> str | None:
        """The key of a request refused before it named a route (raises Denied without a valid one)."""
        key = self.guard.authenticate(authorization, None)
        return key.id if key else None

    def admit(self, call: Call, authorization: str | None) -> state.KeyRow | None:
        """The caller's key, within its rate and its share of in-flight requests (raises Denied); the
        route's ``max_tokens`` applied to the body."""
        key = self.guard.authenticate(authorization, call.route_name)
        call.key_id = key.id if key else None
        if key is not None:
            self.guard.rate(key)
            self._hold_slot(call, key.id)
        route = call.routed
        if route.max_tokens is not None and not 0 < (call.body.get("max_tokens") or 0) <= route.max_tokens:
            call.body["max_tokens"] = route.max_tokens  # a cap, and the default when the client sets none
        return key

    def _hold_slot(self, call: Call, key_id: str) -> None:
        """One of the key's in-flight slots (``http.max_in_flight_per_key``): a key whose requests hang
        on a slow upstream uses up its own share of the gateway, not everyone's."""
        limit = self.plan.http.max_in_flight_per_key
        if limit and self.key_in_flight[key_id] >= limit:
            raise Denied(429, f"key {key_id} already has {limit} requests in flight (plan: "
                              "http.max_in_flight_per_key); retry when one has finished", "too_many_in_flight",
                         retry_after=1.0)
        self.key_in_flight[key_id] += 1
        call.counted_key = True

    def reserve(self, call: Call, key: state.KeyRow | None) -> None:
        """Set the call's bound and hold it against the key's budget (raises Denied when it does not fit)."""
        route = call.routed
        want = call.body.get("max_tokens") or route.max_tokens or self.plan.reserve_max_tokens
        est_prompt = call.size + self.plan.reserve_prompt_overhead
        calls = len(route.tiers()) if route.check else 1  # a cascade may call one upstream per tier
        call.bound_tokens = (est_prompt + want) * calls
        call.bound_usd = max(u.price.cost(est_prompt, want) for u in route.all_upstreams()) * calls
        if key is not None:
            call.reservation = self.guard.reserve(key, call.bound_tokens, call.bound_usd)

    def release(self, call: Call) -> None:
        """The request is over: free its key's slot, and release a reservation that an unexpected
        error left held."""
        if call.key_id is not None and call.counted_key:
            left = self.key_in_flight[call.key_id] - 1
            if left > 0:
                self.key_in_flight[call.key_id] = left
            else:
                del self.key_in_flight[call.key_id]
        if not call.finished and call.reservation is not None:
            self.guard.settle(call.reservation, 0, 0.0)
            call.reservation = None
