"""Run every (model × case × sample) job: cached, bounded per backend, resumable.

Order of work for one bakeoff, chosen so bad input never leaves a half-written run behind:
load suites → build backends → preflight every model → only then create (or reopen) the run.
Each finished job is committed with its scores at once; ``--resume`` skips what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

from . import __version__
from .backends import Backend, Generation, Request, build_backend
from .config import Config, ModelSpec
from .errors import BackendError, BackendUnavailable, ConfigError, WeighbridgeError
from .hashing import stable_hash
from .scorers import Score, Scorer, build_scorer, sandbox
from .store import Store
from .suites import Case, Suite, load_suites

log = logging.getLogger("weighbridge.engine")


@dataclass
class Job:
    model: str
    case: Case
    sample: int


@dataclass
class EngineStats:
    """What the engine did in this invocation (not what the run holds in total)."""

    run_id: str = ""
    jobs_total: int = 0
    skipped_resumed: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    seconds: float = 0.0
    per_model_calls: dict[str, int] = field(default_factory=dict)


NO_SANDBOX = ("no sandbox to run model code in: apt-get install bubblewrap python3-seccomp, or set "
              "sandbox: unsafe-local")

# (model, done, total, passed, errored, already_passed: the passes of a resumed run's finished jobs)
ProgressFn = Callable[[str, int, int, bool, bool, int], None]


def machine_facts() -> dict[str, Any]:
    """The machine part of the manifest: enough to explain why two runs' latencies differ."""
    from .contention import physical_cores, usable_cpus

    facts: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0],
                             "cpu_count": os.cpu_count(), "usable_cpus": usable_cpus(),
                             "physical_cores": physical_cores(),
                             "processor": platform.processor() or platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    facts["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            facts["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    return facts


def build_request(spec: ModelSpec, case: Case, sample: int = 0) -> Request:
    """The request for one job. Repeats get seed + sample index, so with temperature > 0 they differ
    (and stay reproducible); at temperature 0 the seed changes nothing."""
    p = spec.params
    messages = case.rendered_messages()
    seed = p.seed + sample
    if spec.mode == "completion":
        from .backends.llamacpp import render_completion_prompt

        return Request(prompt=render_completion_prompt(spec.prompt_template, messages), temperature=p.temperature,
                       top_p=p.top_p, max_tokens=p.max_tokens, seed=seed, stop=list(p.stop), tools=case.tool_dicts(),
                       response_format=case.response_format)
    return Request(messages=messages, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                   seed=seed, stop=list(p.stop), tools=case.tool_dicts(), tool_choice=case.tool_choice,
                   response_format=case.response_format or structured_format(spec, case))


def structured_format(spec: ModelSpec, case: Case) -> dict[str, Any] | None:
    """The response_format a model's ``structured_output`` mode asks for on a case checked by
    json_schema: the scorer's own schema, or any JSON object. Other cases are left free."""
    if spec.structured_output == "off":
        return None
    schemas = [sp.get("schema") for sp in case.scorers if isinstance(sp, dict) and sp.get("type") == "json_schema"]
    if not schemas and "json_schema" not in case.scorers:
        return None
    if spec.structured_output == "json_schema" and schemas and schemas[0]:
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schemas[0], "strict": True}}
    return {"type": "json_object"}


def cache_key(identity_key: str, request: Request, sample: int) -> str:
    """Model identity + every decoding param + the exact input + the repeat index."""
    return stable_hash({"model": identity_key, "request": request.cache_fields(), "sample": sample})


class Bakeoff:
    """One invocation of a bakeoff over a config: prepare, then run (new or resumed)."""

    def __init__(self, config: Config, store: Store, *, use_cache: bool = True,
                 backends: dict[str, Backend] | None = None) -> None:
        self.config = config
        self.store = store
        self.use_cache = use_cache
        self.suites: list[Suite] = []
        self.backends: dict[str, Backend] = backends or {}
        self.identity_keys: dict[str, str] = {}
        self.manifest: dict[str, Any] = {}
        self._scorers: dict[str, list[Scorer]] = {}
        self.not_applicable: dict[str, dict[str, Any]] = {}
        self.concurrency: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._peak: dict[str, int] = {}  # the most requests a model had in flight at once in this invocation
        self._span: dict[str, list[float]] = {}  # monotonic first start and last end of each model's calls
        self.sampler: Any = None
        self.stats = EngineStats()

    @property
    def cases(self) -> list[Case]:
        return [c for s in self.suites for c in s.cases]

    async def prepare(self, only_models: list[str] | None = None) -> None:
        """Validate suites and reach every model; raises before anything is written."""
        self.suites = load_suites(self.config.suites, self.config.base_dir)
        specs = self.config.models
        if only_models:
            specs = [self.config.model(n) for n in only_models]
        from .lock import locked_sha256

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
        self.not_applicable = self._not_applicable()
        for name, na in self.not_applicable.items():
            for reason, ids in na["reasons"].items():
                kind = "tool " if "tool" in reason else "code " if reason == NO_SANDBOX else ""
                self.manifest["warnings"].append(f"model '{name}': {len(ids)} {kind}case(s) not run - {reason}")
        self.manifest["not_applicable"] = self.not_applicable
        self.concurrency = {n: self._safe_concurrency(n) for n in self.specs}
        self.manifest["concurrency"] = dict(self.concurrency)
        self.judge_ctx = JudgeCalls(self)
        for case in self.cases:
            self._scorers[case.id] = [build_scorer(sp, sandbox=self.config.sandbox) for sp in case.scorers]

    def _not_applicable(self) -> dict[str, dict[str, Any]]:
        """Cases a model cannot take, with the reason: tool cases for a model without tool support,
        and prompts longer than its context window leaves room for (counted with its own tokenizer
        where it is a local GGUF). Not run, and shown as such, rather than failed, errored or truncated."""
        out: dict[str, dict[str, Any]] = {}
        for name, spec in self.specs.items():
            backend = self.backends[name]
            reasons: dict[str, list[str]] = {}
            tool_why = getattr(backend, "tool_support", lambda: None)()
            window = getattr(backend, "context_window", lambda: None)()
            no_sandbox = self.manifest.get("sandbox", {}).get("available") is False
            for c in self.cases:
                why = None
                if no_sandbox and any((sp if isinstance(sp, str) else sp.get("type")) == "python_tests"
                                      for sp in c.scorers):
                    why = NO_SANDBOX
                elif c.tools and tool_why:
                    why = tool_why
                elif c.context_tokens is not None and window:
                    count = getattr(backend, "count_tokens", None)
                    tokens = count(c.rendered_messages()[0]["content"]) if count else c.context_tokens
                    if tokens + spec.params.max_tokens > window:
                        why = f"the prompt and reply do not fit its context window {window:,} (n_ctx)"
                if why:
                    reasons.setdefault(why, []).append(c.id)
            if reasons:
                cases = [i for ids in reasons.values() for i in ids]
                out[name] = {"reason": "; ".join(reasons), "cases": cases, "reasons": reasons}
        return out

    def _cases_use(self, kind: str) -> bool:
        """Does any case have a scorer of this type?"""
        return any((sp if isinstance(sp, str) else sp.get("type")) == kind for c in self.cases for sp in c.scorers)

    def _safe_concurrency(self, name: str) -> int:
        """The config's concurrency, else the server's safe default (with the reason in the warnings)."""
        from .backends.servers import KNOWN

        spec = self.specs[name]
        kind = KNOWN.get(getattr(self.backends[name], "server_kind", None) or "")
        if spec.concurrency is None and kind is not None and kind.safe_concurrency is not None:
            self.manifest["warnings"].append(f"model '{name}' is served by {kind.label}: {kind.note}")
            return kind.safe_concurrency
        serial = getattr(self.backends[name], "max_parallel", None)  # in-process llama.cpp: one at a time
        return min(spec.effective_concurrency, serial) if serial else spec.effective_concurrency

    def _license_verdicts(self) -> dict[str, Any]:
        """The license check that precedes every bakeoff; the report shows it beside the figures."""
        from .catalog import Profile, load_profile
        from .catalog.check import check

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
        jobs = [Job(m, c, s) for m in self.specs for c in self.cases for s in range(self.config.samples)
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

    async def _run_job(self, run_id: str, job: Job, sem: asyncio.Semaphore, progress: ProgressFn | None,
                       counters: dict[str, int], totals: dict[str, int]) -> None:
        spec, backend = self.specs[job.model], self.backends[job.model]
        request = build_request(spec, job.case, job.sample)
        key = cache_key(self.identity_keys[job.model], request, job.sample)
        gen = self.store.cached(key) if self.use_cache else None
        cached = gen is not None
        error = None
        if gen is None:
            async with sem:
                span = self._span.setdefault(job.model, [time.monotonic(), 0.0])
                self._in_flight[job.model] = self._in_flight.get(job.model, 0) + 1
                self._peak[job.model] = max(self._peak.get(job.model, 0), self._in_flight[job.model])
                try:
                    self.stats.model_calls += 1
                    self.stats.per_model_calls[job.model] = self.stats.per_model_calls.get(job.model, 0) + 1
                    gen = await backend.generate(request)
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
        else:
            self.stats.cache_hits += 1
        scores = await self._score(job.case, gen) if gen is not None else []
        self.store.record(run_id, job.model, job.case.id, job.sample, key, self.identity_keys[job.model], gen, scores,
                          cached=cached, error=error)
        counters[job.model] += 1
        if progress:
            progress(job.model, counters[job.model], totals[job.model], bool(scores) and all(s.passed for _, s in scores),
                     error is not None, 0)

    def _contention(self, name: str) -> dict[str, Any]:
        from .contention import usable_cpus

        t0, t1 = self._span[name]
        window = self.sampler.window(t0, t1)
        threads = getattr(self.backends[name], "n_threads", None)
        if isinstance(threads, int):  # an in-process llama.cpp: its own threads against the CPUs it may use
            window["llama_threads"] = threads
            if threads > usable_cpus():
                window["busy"] = True
                window["why"] = "; ".join(filter(None, [window.get("why"), f"n_threads {threads} > the "
                                                       f"{usable_cpus()} CPU(s) this process may use"]))
        return window

    def _record_runtime(self, run_id: str) -> None:
        """Keep what each model's backend measured while it ran (in-process models: resident memory)."""
        for name in self.specs:
            facts = dict(getattr(self.backends[name], "runtime_facts", lambda: None)() or {})
            if self._peak.get(name):  # what cost is priced with: requests that really shared the hardware
                facts["concurrency_limit"] = self.concurrency.get(name, self.specs[name].effective_concurrency)
                facts["peak_in_flight"] = self._peak[name]
            if name in self._span and self.sampler is not None:  # was the machine busy while it answered?
                facts["contention"] = self._contention(name)
            if facts:
                self.store.set_model_runtime(run_id, name, facts)

    async def run(self, run_id: str, progress: ProgressFn | None = None) -> EngineStats:
        """Run the jobs still missing from ``run_id``. Interrupts leave the run resumable."""
        t0 = time.perf_counter()
        self.stats.run_id = run_id
        todo = self._jobs(run_id)
        totals = {m: (len(self.cases) - len(self.not_applicable.get(m, {}).get("cases", []))) * self.config.samples
                  for m in self.specs}
        counters = {m: totals[m] - sum(1 for j in todo if j.model == m) for m in self.specs}
        if progress:
            resumed_passes: dict[str, int] = {}
            if any(counters.values()):  # a resumed run: its finished passes count from the start
                for r in self.store.generations(run_id):
                    if r.passed and r.error is None:
                        resumed_passes[r.model] = resumed_passes.get(r.model, 0) + 1
            for m in self.specs:
                progress(m, counters[m], totals[m], False, False, resumed_passes.get(m, 0))
        sems = {m: asyncio.Semaphore(self.concurrency.get(m, self.specs[m].effective_concurrency)) for m in self.specs}

        async def run_lane(models: list[str]) -> None:
            for m in models:  # one model after another within a lane
                await asyncio.gather(*(self._run_job(run_id, j, sems[m], progress, counters, totals)
                                       for j in todo if j.model == m))

        from .contention import LoadSampler

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


async def score_answer(scorers: list[Scorer], case: Case, gen: Generation, judge_ctx: Any) -> list[tuple[str, Score]]:
    """Every scorer of a case on one answer, through the one interface all scorers share."""
    return [(s.kind, await s.evaluate(case, gen, judge_ctx)) for s in scorers]


class JudgeCalls:
    """The judges' backends behind the response cache: a re-score of unchanged answers calls nobody."""

    def __init__(self, bake: "Bakeoff") -> None:
        self.bake = bake
        self.calls = 0
        self.cache_hits = 0
        self._sems = {n: asyncio.Semaphore(j.effective_concurrency) for n, j in bake.judge_specs.items()}

    async def call(self, judge: str | None, request: Request) -> Generation:
        names = list(self.bake.judge_specs)
        name = judge or (names[0] if names else None)
        if name not in self.bake.judge_specs:
            raise BackendError(f"no judge named '{name}' (judges: {', '.join(names) or 'none'})", kind="config")
        key = cache_key(self.bake.identity_keys[name], request, 0)
        if self.bake.use_cache:
            hit = self.bake.store.cached(key)
            if hit is not None:
                self.cache_hits += 1
                return hit
        async with self._sems[name]:
            self.calls += 1
            gen = await self.bake.backends[name].generate(request)
        self.bake.store.cache_put(key, self.bake.identity_keys[name], gen)
        return gen


_FAMILIES = ("qwen", "qwq", "llama", "deepseek", "glm", "kimi", "minimax", "mistral", "gemma", "gpt-oss", "phi",
             "smollm", "yi")


def model_family(spec: ModelSpec, cfg: Config) -> str | None:
    """The model family, from its catalog entry, its GGUF's own metadata, or its served model id."""
    from .catalog.catalog import load_catalog
    from .catalog.check import identify_spec
    from .catalog.licenses import load_licenses

    cat = load_catalog()
    entry = cat.get(spec.catalog_id) if spec.catalog_id else None
    if entry is None:
        ident = identify_spec(spec, cfg, load_licenses())
        cid = ident.facts.get("catalog_id")
        entry = cat.get(cid) if cid else None
        hint = str(ident.facts.get("general.basename") or spec.model or "").lower()
    else:
        hint = ""
    if entry is not None:
        return "qwen" if entry.family == "qwen" else entry.family
    for fam in _FAMILIES:
        if fam in hint:
            return "qwen" if fam == "qwq" else fam
    return None


def is_local(spec: ModelSpec) -> bool:
    """Does this model compute on this machine (in-process, or a server on loopback)?"""
    if spec.backend == "llamacpp":
        return True
    host = (urlsplit(spec.base_url or "").hostname or "").lower()
    return host in ("localhost", "::1", "0.0.0.0") or host.startswith("127.")


def lanes(schedule: str, specs: list[ModelSpec]) -> list[list[str]]:
    """Group models into lanes that run side by side; models within a lane run one after another.

    'auto' puts every model that computes on this machine into one lane, so local models never
    share the CPU/GPU and distort each other's latency, while remote endpoints run in parallel.
    """
    if schedule == "sequential":
        return [[s.name for s in specs]]
    if schedule == "parallel":
        return [[s.name] for s in specs]
    local = [s.name for s in specs if is_local(s)]
    return ([local] if local else []) + [[s.name] for s in specs if not is_local(s)]


async def run_bakeoff(config: Config, store: Store | str | os.PathLike, *, resume: bool | str = False,
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


@contextlib.asynccontextmanager
async def judges_for(config: Config, store: Store, *, use_cache: bool = True) -> AsyncIterator[JudgeCalls]:
    """The config's judges, reached and identified, behind the response cache; closed afterwards.
    For work on a stored run (rescore, pairwise): no candidate model is built."""
    bake = Bakeoff(config, store, use_cache=use_cache)
    bake.specs = {}
    bake.judge_specs = {j.name: j for j in config.judges}
    for spec in config.judges:
        bake.backends[spec.name] = build_backend(spec, config.base_dir)
    try:
        await asyncio.gather(*(b.preflight() for b in bake.backends.values()))
        for name, b in bake.backends.items():
            bake.identity_keys[name] = stable_hash(b.identity())
        yield JudgeCalls(bake)
    finally:
        await asyncio.gather(*(b.aclose() for b in bake.backends.values()), return_exceptions=True)


@dataclass
class Rescore:
    """What a rescore did: the new scored version, how many answers changed pass/fail (and which),
    and which cases the given suite file did not match."""

    version: int
    done: int
    changed: list[str]
    judges: "JudgeCalls"
    source: str
    not_in_file: list[str] = field(default_factory=list)  # run cases the file lacks: scored as before
    not_in_run: list[str] = field(default_factory=list)  # file cases the run has no answer to


async def rescore_run(config: Config, store: Store, run_id: str, *, use_cache: bool = True,
                      suite: str | None = None, scorer: str | dict[str, Any] | None = None) -> Rescore:
    """Score a stored run's answers again and keep the result as the run's next scored version
    (the scores it replaces are kept). No candidate model is called; judges are, unless cached.

    The scorers come from the latest scored version's cases (at first: the cases stored with the
    run); with ``suite`` from that suite file's cases, matched by id; with ``scorer`` one scorer spec
    replaces every case's scorers. Everything is computed before anything is written."""
    from .suites import load_suite

    stored = {c["id"]: Case.model_validate(c["case"]) for c in store.run_cases(run_id)}
    versions = store.score_versions(run_id)
    latest = next((v["cases"] for v in reversed(versions) if v["cases"]), None)
    cases = {cid: Case.model_validate(latest[cid]) if latest and cid in latest else c for cid, c in stored.items()}
    source = "stored cases"
    not_in_file: list[str] = []
    not_in_run: list[str] = []
    if suite is not None:
        fresh = {c.id: c for c in load_suite(suite, config.base_dir).cases}
        not_in_file = sorted(set(cases) - set(fresh))
        not_in_run = sorted(set(fresh) - set(cases))
        if not set(fresh) & set(cases):
            raise WeighbridgeError(f"{suite}: none of its {len(fresh)} case ids is in run {run_id}; "
                                   "rescore matches cases by id")
        cases = {cid: fresh.get(cid, c) for cid, c in cases.items()}
        source = f"suite {suite}"
    if scorer is not None:
        try:
            build_scorer(scorer, sandbox=config.sandbox)
        except ValueError as e:
            raise ConfigError(f"--scorer: {e}") from None
        cases = {cid: c.model_copy(update={"scorers": [scorer]}) for cid, c in cases.items()}
        source += f", scorer {scorer if isinstance(scorer, str) else scorer.get('type')}"
    try:
        scorers = {cid: [build_scorer(sp, sandbox=config.sandbox) for sp in c.scorers] for cid, c in cases.items()}
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    async with judges_for(config, store, use_cache=use_cache) as judges:
        new: dict[int, list[tuple[str, Score]]] = {}
        changed: list[str] = []
        for row in store.generations(run_id):
            if row.generation is None:
                continue
            scores = await score_answer(scorers[row.case_id], cases[row.case_id], row.generation, judges)
            if (bool(scores) and all(sc.passed for _, sc in scores)) != row.passed:
                changed.append(f"{row.model}: {row.key}")
            new[row.id] = scores
        version = store.new_score_version(run_id, new, source=source,
                                          cases={cid: c.model_dump(mode="json") for cid, c in cases.items()})
    return Rescore(version=version, done=len(new), changed=changed, judges=judges, source=source,
                   not_in_file=not_in_file, not_in_run=not_in_run)


async def pairwise_run(config: Config, store: Store, run_id: str, model_a: str, model_b: str, rubric: str,
                       judge: str | None = None) -> list[Any]:
    """Judge two models' stored answers (first sample of each case) in both orders."""
    from .scorers.judge import pairwise

    if not config.judges:
        raise ConfigError("weighbridge.yaml has no judges: (add the model that should judge)", field="judges")
    rows = {(r.model, r.case_id, r.sample): r for r in store.generations(run_id)}
    models = {k[0] for k in rows}
    for m in (model_a, model_b):
        if m not in models:
            raise WeighbridgeError(f"run {run_id} has no model '{m}' (it has: {', '.join(sorted(models))})")
    async with judges_for(config, store) as judges:
        out = []
        for c in store.run_cases(run_id):
            a, b = rows.get((model_a, c["id"], 0)), rows.get((model_b, c["id"], 0))
            if a and b and a.generation and b.generation:
                case = Case.model_validate(c["case"])
                out.append(await pairwise(judges, judge, c["id"], case.rendered_messages(), rubric,
                                          model_a, a.generation.text, model_b, b.generation.text))
        return out


__all__ = ["Bakeoff", "EngineStats", "Job", "judges_for", "pairwise_run", "rescore_run", "run_bakeoff", "BackendUnavailable"]
