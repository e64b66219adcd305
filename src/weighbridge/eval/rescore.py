"""Work on a stored run without calling its models: score its answers again, or judge two models'
answers side by side. Judges are called (behind the cache); candidates never are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.config import Config
from ..core.errors import ConfigError, WeighbridgeError
from .judging import JudgeCalls, judges_for, score_answer
from ..scorers import Score, build_scorer
from ..storage.store import Store
from ..suites import Case


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
    from ..suites import load_suite

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
            if Score.all_passed(scores) != row.passed:
                changed.append(f"{row.model}: {row.key}")
            new[row.id] = scores
        version = store.new_score_version(run_id, new, source=source,
                                          cases={cid: c.model_dump(mode="json") for cid, c in cases.items()})
    return Rescore(version=version, done=len(new), changed=changed, judges=judges, source=source,
                   not_in_file=not_in_file, not_in_run=not_in_run)


async def pairwise_run(config: Config, store: Store, run_id: str, model_a: str, model_b: str, rubric: str,
                       judge: str | None = None) -> list[Any]:
    """Judge two models' stored answers (first sample of each case) in both orders."""
    from ..scorers.judge import pairwise

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
