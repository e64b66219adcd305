"""Judges: the models a ``judge`` scorer calls, behind the response cache, for a bakeoff and for work
on a stored run (rescore, pairwise) alike; and the one call that puts an answer through a case's scorers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from ..backends import Backend, Generation, Request, build_backend
from ..core.config import Config, ModelSpec
from ..core.errors import BackendError
from ..core.hashing import stable_hash
from ..scorers import Score, Scorer
from ..scorers.base import JudgeContext
from ..storage.store import Store
from ..suites import Case
from .thinking import censored


def cache_key(identity_key: str, request: Request, sample: int, episode: dict[str, Any] | None = None) -> str:
    """Model identity + every decoding param + the exact input + the repeat index (+ for an agent
    case, the episode's definition: environment code, state, turns, tools, limits)."""
    fields = {"model": identity_key, "request": request.cache_fields(), "sample": sample}
    return stable_hash(fields if episode is None else {**fields, "episode": episode})


async def score_answer(scorers: list[Scorer], case: Case, gen: Generation, judge_ctx: JudgeContext
                       ) -> list[tuple[str, Score]]:
    """Every scorer of a case on one answer, through the one interface all scorers share; none for an
    answer whose thinking was cut off (censored: there is no answer to judge)."""
    if censored(gen):
        return []
    return [(s.kind, await s.evaluate(case, gen, judge_ctx)) for s in scorers]


class JudgeCalls:
    """The judges' backends behind the response cache: a re-score of unchanged answers calls nobody."""

    def __init__(self, judge_specs: dict[str, ModelSpec], backends: dict[str, Backend], identity_keys: dict[str, str],
                 store: Store, use_cache: bool = True) -> None:
        self.judge_specs, self.backends, self.identity_keys = judge_specs, backends, identity_keys
        self.store, self.use_cache = store, use_cache
        self.calls = 0
        self.cache_hits = 0
        self._sems = {n: asyncio.Semaphore(j.effective_concurrency if j.concurrency != "auto" else 4)
                      for n, j in judge_specs.items()}  # a judge's calls are few: auto stays at its start

    async def call(self, judge: str | None, request: Request) -> Generation:
        names = list(self.judge_specs)
        name = judge or (names[0] if names else None)
        if name not in self.judge_specs:
            raise BackendError(f"no judge named '{name}' (judges: {', '.join(names) or 'none'})", kind="config")
        key = cache_key(self.identity_keys[name], request, 0)
        if self.use_cache:
            hit = self.store.cached(key)
            if hit is not None:
                self.cache_hits += 1
                return hit
        async with self._sems[name]:
            self.calls += 1
            gen = await self.backends[name].generate(request)
        self.store.cache_put(key, self.identity_keys[name], gen)
        return gen


@contextlib.asynccontextmanager
async def judges_for(config: Config, store: Store, *, use_cache: bool = True) -> AsyncIterator[JudgeCalls]:
    """The config's judges, reached and identified, behind the response cache; closed afterwards.
    For work on a stored run (rescore, pairwise): no candidate model is built."""
    backends = {spec.name: build_backend(spec, config.base_dir) for spec in config.judges}
    try:
        await asyncio.gather(*(b.preflight() for b in backends.values()))
        keys = {name: stable_hash(b.identity()) for name, b in backends.items()}
        yield JudgeCalls({j.name: j for j in config.judges}, backends, keys, store, use_cache)
    finally:
        await asyncio.gather(*(b.aclose() for b in backends.values()), return_exceptions=True)
