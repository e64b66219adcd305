"""Run every (model × case × sample) job: cached, bounded per backend, resumable.

Order of work for one bakeoff, chosen so bad input never leaves a half-written run behind:
load suites → build backends → preflight every model → only then create (or reopen) the run.
Each finished job is committed with its scores at once; ``--resume`` skips what is stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import __version__
from ..backends import Backend, Generation, build_backend
from ..backends.base import declared
from ..core.config import Config
from ..core.contention import LoadSampler
from ..core.errors import BackendError, BackendUnavailable, ConfigError, WeighbridgeError
from ..catalog.families import model_family
from ..core.hashing import stable_hash
from .agent.job import episode_definition, gold_states, run_agent_job
from .agent.sandboxed import EnvironmentFailed
from .adaptive import AdaptiveLimit
from .concurrency import answer_seconds, choose_concurrency, step_seconds
from .applicable import COMPLETION_AGENT, NO_SANDBOX, not_applicable, scored_by
from .jobs import Job, build_request
from .judging import JudgeCalls, cache_key, score_answer
from .score_cache import cacheable, case_fingerprint, score_key, timed_out
from .thinking import separate_thinking
from .machine import machine_facts
from .schedule import lanes
from ..scorers import Score, Scorer, build_scorer, sandbox
from ..storage.store import Store
from ..suites import Case, Suite, load_suites

log = logging.getLogger("weighbridge.engine")


@dataclass
class EngineStats:
    """What the engine did in this invocation (not what the run holds in total)."""

    run_id: str = ""
    jobs_total: int = 0
    skipped_resumed: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    score_cache_hits: int = 0  # answers whose scores came from the score cache (same answer, case and scorer code)
    score_cache_timeouts: int = 0  # of those, verdicts a sandbox time limit decided
    errors: int = 0
    seconds: float = 0.0
    per_model_calls: dict[str, int] = field(default_factory=dict)


# (model, done, total, passed, errored, already_passed: the passes of a resumed run's finished jobs)
ProgressFn = Callable[[str, int, int, bool, bool, int], None]


class Bakeoff:
    """One invocation of a bakeoff over a config: prepare, then run (new or resumed)."""

    def __init__(self, config: Config, store: Store, *, use_cache: bool = True,
                 backends: dict[str, Backend] | None = None) -> None:
        self.config = config
        self.store = store
        self.use_cache = use_cache
        self.suites: list[Suite] = []
        self.backends: dict[str, Backend] = {n: declared(b) for n, b in (backends or {}).items()}
        self.identity_keys: dict[str, str] = {}
        self.manifest: dict[str, Any] = {}
        self._scorers: dict[str, list[Scorer]] = {}
        self._case_prints: dict[str, str] = {}  # per case: its part of a score's cache key
        self.gold: dict[str, dict[str, list[Any]]] = {}  # agent cases: state and result digests after each turn
        self.not_applicable: dict[str, dict[str, Any]] = {}
        self.concurrency: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._peak: dict[str, int] = {}  # the most requests a model had in flight at once in this invocation
        self._span: dict[str, list[float]] = {}  # monotonic first start and last end of each model's calls
        self._busy: dict[str, float] = {}  # Σ seconds of each model's answers: ÷ span = the mean in flight
        self.adaptive: dict[str, AdaptiveLimit] = {}  # models whose concurrency is found as the run goes (auto)
        self.sampler: LoadSampler | None = None
        self.stats = EngineStats()

    @property
    def cases(self) -> list[Case]:
        return [c for s in self.suites for c in s.cases]

    async def prepare(self, only_models: list[str] | None = None) -> None:
        """Validate suites and reach every model; raises before anything is written."""
        self.suites = load_suites(self.config.suites, self.config.base_dir)
        await self._replay_gold()
        specs = self.config.models
        if only_models:
            specs = [self.config.model(n) for n in only_models]
        from ..catalog.lock import locked_sha256

        for spec in specs:
            if spec.name not in self.backends:
                pinned = locked_sha256(self.config, spec.name) if spec.backend == "llamacpp" else None
                self.backends[spec.name] = build_backend(spec, self.config.base_dir, pinned)
        self.specs = {s.name: s for s in specs}
        self.judge_specs = {j.name: j for j in self.config.judges}
        for spec in self.config.judges:
            self.backends.setdefault(spec.name, build_backend(spec, self.config.base_dir))
        uses_judge = self._cases_use("judge")
        if uses_judge and not self.judge_specs:
            raise ConfigError("a case uses the 'judge' scorer but weighbridge.yaml has no judges: (add a model there)",
                              field="judges")
        await asyncio.gather(*(self.backends[n].preflight() for n in [*self.specs, *self.judge_specs]))
        models_manifest = {}
        for name in [*self.specs, *self.judge_specs]:
            b = self.backends[name]
            self.identity_keys[name] = stable_hash(b.identity())
            models_manifest[name] = b.manifest()
        self.manifest = {"weighbridge": __version__, "machine": machine_facts(), "models": models_manifest,
                         "licenses": self._license_verdicts(),
                         "suites": {s.name: {"path": s.path, "cases": len(s.cases), "sha256": s.content_hash}
                                    for s in self.suites},
                         "sandbox": sandbox.describe(self.config.sandbox), "judges": list(self.judge_specs),
                         "warnings": self._judge_family_warnings() if uses_judge else []}
        if self._cases_use("python_tests") and not self.manifest["sandbox"].get("isolated"):
            sb = self.manifest["sandbox"]
            self.manifest["warnings"].append(f"python_tests cases are not run: {sb['problem']}" if "problem" in sb
                                             else "sandbox: unsafe-local - model code runs with NO isolation")
        for name, spec in self.specs.items():
            if spec.thinking_budget is not None and spec.backend != "llamacpp" and spec.thinking != "off":
                self.manifest["warnings"].append(
                    f"model '{name}': thinking_budget is enforced in-process (llamacpp) only; this served model's "
                    f"max_tokens ({spec.params.max_tokens}) caps thinking and answer together - set the server's own "
                    "budget through extra_body where it has one")
        self.not_applicable = not_applicable(self.cases, self.specs, self.backends,
                                             no_sandbox=self.manifest.get("sandbox", {}).get("available") is False)
        agent = {c.id for c in self.cases if c.is_agent}
        for name, na in self.not_applicable.items():
            for reason, ids in na["reasons"].items():
                kind = "agent " if set(ids) <= agent and reason in (COMPLETION_AGENT, NO_SANDBOX) else \
                    "code " if reason == NO_SANDBOX and not set(ids) & agent else \
                    "code and agent " if reason == NO_SANDBOX else "tool " if "tool" in reason else ""
                self.manifest["warnings"].append(f"model '{name}': {len(ids)} {kind}case(s) not run - {reason}")
        self.manifest["not_applicable"] = self.not_applicable
        self.concurrency = {n: self._safe_concurrency(n) for n in self.specs}
        self.manifest["concurrency"] = {n: "auto" if n in self.adaptive else "batch" if self.backends[n].batches
                                        else c for n, c in self.concurrency.items()}
        for case in self.cases:
            self._scorers[case.id] = [build_scorer(sp, sandbox=self.config.sandbox) for sp in case.scorers]
        if any(c.is_agent for c in self.cases) and self.config.sandbox == "unsafe-local":
            self.manifest["warnings"].append("sandbox: unsafe-local - agent environments run with NO isolation")

    async def _replay_gold(self) -> None:
        """Every agent case's gold calls, replayed once in its environment: a broken task is said here,
        before any model is loaded and before the run exists (none where nothing can run them)."""
        agent = [c for c in self.cases if c.is_agent]
        if agent and sandbox.describe(self.config.sandbox).get("available") is not False:
            states = await asyncio.gather(*(gold_states(c, self.config.sandbox) for c in agent))
            self.gold = {c.id: s for c, s in zip(agent, states)}

    def _cases_use(self, kind: str) -> bool:
        """Does any case have a scorer of this type?"""
        return any(scored_by(c, kind) for c in self.cases)

    def _safe_concurrency(self, name: str) -> int:
        limit, limiter, warning = choose_concurrency(name, self.specs[name], self.backends[name])
        if limiter is not None:
            self.adaptive[name] = limiter
        if warning:
            self.manifest["warnings"].append(warning)
        return limit

    def _license_verdicts(self) -> dict[str, Any]:
        """The license check that precedes every bakeoff; the report shows it beside the figures."""
        from ..catalog import Profile, load_profile
        from ..catalog.check import check

        profile = load_profile(self.config.resolve(self.config.profile)) if self.config.profile else Profile()
        results = check(list(self.specs), self.config, profile)
        return {"profile": self.config.profile or "default", **{r.name: r.to_dict() for r in results}}

    @property
    def suite_hash(self) -> str:
        return stable_hash([s.content_hash for s in self.suites])

    def create_run(self) -> str:
        cfg = self.config.model_dump(mode="json", exclude={"base_dir"})
        models = [(n, s.backend, self.identity_keys[n], s.model_dump(mode="json")) for n, s in self.specs.items()]
        cases = [(c.id, s.name, c.workload or "general", c.model_dump(mode="json")) for s in self.suites for c in s.cases]
        return self.store.create_run(config=cfg, manifest=self.manifest, suite_hash=self.suite_hash,
                                     samples=self.config.samples, models=models, cases=cases)

    def reopen_run(self, run_id: str | None, retry_errors: bool = False) -> str:
        """Resume: the run must have the same cases and the same model identities as now. Its missing
        and errored jobs run again; with ``retry_errors`` a finished run may be reopened too."""
        run_id = run_id or self.store.latest_unfinished() or (self.store.latest_run() if retry_errors else None)
        if run_id is None:
            raise WeighbridgeError(f"{self.store.path}: no unfinished run to resume; run without --resume"
                                   + ("" if retry_errors else ", or add --retry-errors to re-call the errored "
                                      "jobs of the latest finished run"))
        run = self.store.run(run_id)
        if run["suite_hash"] != self.suite_hash:
            raise WeighbridgeError(f"run {run_id} was made with different cases; the suites changed since. "
                                   "Start a new run (drop --resume).")
        stored = {m["name"]: m["identity_key"] for m in self.store.run_models(run_id)}
        if stored != self.identity_keys:
            raise WeighbridgeError(f"run {run_id} was made with other models or model files ({', '.join(stored)}); "
                                   "start a new run (drop --resume).")
        self.store.set_status(run_id, "running")
        return run_id

    def _jobs(self, run_id: str) -> list[Job]:
        done = self.store.done_jobs(run_id)
        skip = {m: set(na["cases"]) for m, na in self.not_applicable.items()}
        jobs = [Job(m, c, s) for m in self.specs for c in self.cases for s in range(c.trials or self.config.samples)
                if c.id not in skip.get(m, ())]
        self.stats.jobs_total = len(jobs)
        todo = [j for j in jobs if (j.model, j.case.id, j.sample) not in done]
        self.stats.skipped_resumed = len(jobs) - len(todo)
        return todo

    async def _score(self, case: Case, gen: Generation) -> list[tuple[str, Score]]:
        return await score_answer(self._scorers[case.id], case, gen, self.judge_ctx)

    def _judge_family_warnings(self) -> list[str]:
        """A judge tends to prefer its own family's answers: say so when it grades one of them."""
        out = []
        for j in self.judge_specs.values():
            fam = model_family(j, self.config)
            for m in self.specs.values():
                if fam and fam == model_family(m, self.config):
                    out.append(f"judge '{j.name}' and candidate '{m.name}' are both {fam} models: "
                               "the judge may favour its own family")
        return out

    async def _run_job(self, run_id: str, job: Job, sem: Any, progress: ProgressFn | None,
                       counters: dict[str, int], totals: dict[str, int]) -> None:
        spec, backend = self.specs[job.model], self.backends[job.model]
        request = build_request(spec, job.case, job.sample)
        agent = job.case.is_agent
        key = cache_key(self.identity_keys[job.model], request, job.sample,
                        episode_definition(job.case) if agent else None)
        gen = self.store.cached(key) if self.use_cache else None
        cached = gen is not None
        error = None
        if gen is None:
            async with sem:
                started = time.monotonic()
                span = self._span.setdefault(job.model, [started, 0.0])
                self._in_flight[job.model] = self._in_flight.get(job.model, 0) + 1
                self._peak[job.model] = max(self._peak.get(job.model, 0), self._in_flight[job.model])
                try:
                    self.stats.model_calls += 1
                    self.stats.per_model_calls[job.model] = self.stats.per_model_calls.get(job.model, 0) + 1
                    gen = (await run_agent_job(backend, job.case, request, self.gold[job.case.id], self.config.sandbox)
                           if agent else await backend.generate(request))
                except EnvironmentFailed as e:
                    error = f"environment: {e}"
                    self.stats.errors += 1
                except BackendError as e:
                    error = f"{e.kind}: {e}"
                    self.stats.errors += 1
                except Exception as e:  # noqa: BLE001 - whatever one answer does, it is that job's error
                    log.debug("model %s, case %s: unexpected error", job.model, job.case.id, exc_info=True)
                    error = f"internal_error: {type(e).__name__}: {str(e)[:300]}"
                    self.stats.errors += 1
                finally:
                    self._in_flight[job.model] -= 1
                    span[1] = time.monotonic()
                    self._busy[job.model] = self._busy.get(job.model, 0.0) + answer_seconds(gen)
                    if job.model in self.adaptive:
                        self.adaptive[job.model].done(error is None, span[1] - started, step_seconds(gen, agent))
        else:
            self.stats.cache_hits += 1
        scores: list[tuple[str, Score]] = []
        skey = None
        if gen is not None:
            if not agent:
                gen = separate_thinking(gen, max_tokens=request.max_tokens, tags=spec.reasoning_tags,
                                        count=backend.count_tokens, prefilled=spec.thinking_prefilled)
            printed = self._case_prints.get(job.case.id)
            if printed is None:
                printed = self._case_prints[job.case.id] = case_fingerprint(
                    job.case, sandbox=self.config.sandbox, judges={n: self.identity_keys[n] for n in self.judge_specs})
            skey = score_key(printed, gen)
            hit = self.store.cached_scores(skey) if self.use_cache else None
            if hit is not None:
                scores, skey = hit, None
                self.stats.score_cache_hits += 1
                self.stats.score_cache_timeouts += timed_out(hit)
            else:
                scores = await self._score(job.case, gen)
                skey = skey if cacheable(scores) else None
        self.store.record(run_id, job.model, job.case.id, job.sample, key, self.identity_keys[job.model], gen, scores,
                          cached=cached, error=error, score_key=skey)
        counters[job.model] += 1
        if progress:
            progress(job.model, counters[job.model], totals[job.model], Score.all_passed(scores),
                     error is not None, 0)

    def _contention(self, name: str) -> dict[str, Any]:
        t0, t1 = self._span[name]
        assert self.sampler is not None, "the sampler runs while models answer"
        return self.sampler.window(t0, t1, self.backends[name].n_threads)  # an in-process llama.cpp's own threads

    def _record_runtime(self, run_id: str) -> None:
        """Keep what each model's backend measured while it ran (in-process models: resident memory)."""
        for name in self.specs:
            facts = dict(self.backends[name].runtime_facts() or {})
            if self._peak.get(name):  # what cost is priced with: requests that really shared the hardware
                facts["concurrency_limit"] = self.concurrency.get(name, self.specs[name].effective_concurrency)
                facts["peak_in_flight"] = self._peak[name]
            limiter = self.adaptive.get(name)
            if limiter is not None and name in self._span:
                t0, t1 = self._span[name]
                facts["adaptive"] = limiter.facts(self._busy.get(name, 0.0), t1 - t0)
            if name in self._span and self.sampler is not None:  # was the machine busy while it answered?
                facts["contention"] = self._contention(name)
            if facts:
                self.store.set_model_runtime(run_id, name, facts)

    async def run(self, run_id: str, progress: ProgressFn | None = None) -> EngineStats:
        """Run the jobs still missing from ``run_id``. Interrupts leave the run resumable."""
        t0 = time.perf_counter()
        self.stats.run_id = run_id
        self.judge_ctx = JudgeCalls(self.judge_specs, self.backends, self.identity_keys, self.store, self.use_cache)
        todo = self._jobs(run_id)
        totals = {m: sum(c.trials or self.config.samples for c in self.cases
                         if c.id not in self.not_applicable.get(m, {}).get("cases", ())) for m in self.specs}
        counters = {m: totals[m] - sum(1 for j in todo if j.model == m) for m in self.specs}
        if progress:
            resumed_passes: dict[str, int] = {}
            if any(counters.values()):  # a resumed run: its finished passes count from the start
                for r in self.store.generations(run_id):
                    if r.passed and r.error is None:
                        resumed_passes[r.model] = resumed_passes.get(r.model, 0) + 1
            for m in self.specs:
                progress(m, counters[m], totals[m], False, False, resumed_passes.get(m, 0))
        sems: dict[str, Any] = {m: self.adaptive.get(m) or asyncio.Semaphore(
            self.concurrency.get(m, self.specs[m].effective_concurrency)) for m in self.specs}

        async def run_lane(models: list[str]) -> None:
            for m in models:  # one model after another within a lane
                await asyncio.gather(*(self._run_job(run_id, j, sems[m], progress, counters, totals)
                                       for j in todo if j.model == m))
                if self.backends[m].n_threads is not None:
                    # an in-process model is done: free its weights and buffers before the next one loads, so
                    # a run holds one at a time and each model's resident memory is its own (variants of one
                    # file would otherwise count each other's mapped pages)
                    await self.backends[m].aclose()

        self.sampler = LoadSampler()
        self.sampler.start()
        tasks = [asyncio.ensure_future(run_lane(lane)) for lane in lanes(self.config.schedule, list(self.specs.values()))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            sandbox.kill_all()  # scorers run in threads: end their programs, or shutdown waits for them
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            sandbox.kill_all()
            self.store.set_status(run_id, "interrupted")
            raise
        finally:
            self.sampler.stop()
            self._record_runtime(run_id)
            await asyncio.gather(*(b.aclose() for b in self.backends.values()), return_exceptions=True)
            self.stats.seconds = time.perf_counter() - t0
        self.store.set_status(run_id, "finished")
        return self.stats


async def run_bakeoff(config: Config, store: Store | str | os.PathLike[str], *, resume: bool | str = False,
                      use_cache: bool = True, only_models: list[str] | None = None,
                      progress: ProgressFn | None = None,
                      on_run: Callable[[str], None] | None = None, retry_errors: bool = False) -> EngineStats:
    """The whole bakeoff: prepare (no writes), create or reopen the run, run the missing jobs.

    Given a path, the store is opened only once every suite and model checked out, so bad input
    does not even leave an empty database behind.
    """
    bake = Bakeoff(config, store if isinstance(store, Store) else None, use_cache=use_cache)  # type: ignore[arg-type]
    try:
        await bake.prepare(only_models)
    except BaseException:
        await asyncio.gather(*(b.aclose() for b in bake.backends.values()), return_exceptions=True)
        raise
    if bake.store is None:
        bake.store = Store(store)
    run_id = (bake.reopen_run(resume if isinstance(resume, str) else None, retry_errors) if resume
              else bake.create_run())
    if on_run:
        on_run(run_id)
    return await bake.run(run_id, progress)


__all__ = ["Bakeoff", "EngineStats", "Job", "run_bakeoff", "BackendUnavailable"]
