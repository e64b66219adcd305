"""The SQLite store: runs, their manifests, generations, scores and the response cache.

Every bakeoff, bench and cost figure is written here (the gateway keeps its own state, spend and audit
tables in gateway/state.py, shared.py and audit.py), and every text this module writes passes
``scrub`` first. One file per project, WAL mode, numbered migrations (``migrations.py``). Each finished job is committed in its own transaction together with its
scores and cache entry, so a ``kill -9`` loses at most the jobs in flight.
"""

from __future__ import annotations

import functools
import json
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import WeighbridgeError
from .migrations import SchemaTooNew, applied_sqlite, migrate_sqlite
from .store_schema import SCHEMA
from ..core.types import Generation, Score
from ..core.scrub import finite, scrub, scrub_obj

def _dump(obj: Any) -> str:
    """The one way a value becomes stored JSON: our secrets masked (keys included), NaN and infinities
    as null, so nothing an upstream said can leak through the store or make a later read crash."""
    return json.dumps(finite(scrub_obj(obj)), ensure_ascii=False, allow_nan=False)


@dataclass
class StoredGeneration:
    """A generation row with its scores, as the report reads it."""

    model: str
    case_id: str
    sample: int
    cached: bool
    error: str | None
    passed: bool
    generation: Generation | None
    scores: list[tuple[str, Score]]
    id: int = 0

    @property
    def key(self) -> str:
        """The paired-comparison item: "case_id#sample"."""
        return f"{self.case_id}#{self.sample}"

    @property
    def mean_score(self) -> float:
        """Mean scorer value: partial credit (fields right, tests passed) that pass/fail hides."""
        return sum(s.value for _, s in self.scores) / len(self.scores) if self.scores else 0.0


class StoreError(WeighbridgeError):
    """The store file cannot be used as it is: damaged, locked, read-only or from a newer version."""


def _store_error(path: str, e: sqlite3.Error) -> StoreError:
    """One line naming the file, what is wrong with it and what to do - never a traceback."""
    text = str(e)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return StoreError(f"{path}: the store is locked by another process (a bakeoff or rescore still writing?); "
                          "wait for it to finish, then run again")
    if "readonly" in low or "read-only" in low:
        return StoreError(f"{path}: the store is read-only (check the file's and its folder's permissions, or give "
                          "--store a writable path)")
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return StoreError(f"{path}: the store is damaged ({text}); move it aside (keep it for recovery) and run again "
                          "to start a new one")
    if "unable to open" in low:
        return StoreError(f"{path}: cannot open the store (does its folder exist, and may this user write there?)")
    return StoreError(f"{path}: the store failed: {text}")


def _guarded(cls: type) -> type:
    """Every public method of the store turns SQLite's errors into one ``StoreError``."""
    for name, fn in list(vars(cls).items()):
        if not callable(fn) or (name.startswith("_") and name != "__init__") or name == "transaction":
            continue

        def wrap(fn: Any) -> Any:
            @functools.wraps(fn)
            def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return fn(self, *args, **kwargs)
                except sqlite3.Error as e:
                    raise _store_error(getattr(self, "path", "the store"), e) from None
                except PermissionError as e:
                    raise _store_error(getattr(self, "path", "the store"),
                                       sqlite3.OperationalError(f"read-only: {e}")) from None
            return guarded
        setattr(cls, name, wrap(fn))
    return cls


@_guarded
class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- schema -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        try:
            migrate_sqlite(self.db, SCHEMA, self.path)
        except SchemaTooNew as e:
            raise StoreError(str(e)) from None

    @property
    def schema_version(self) -> int:
        return applied_sqlite(self.db, SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, *, config: dict[str, Any], manifest: dict[str, Any], suite_hash: str, samples: int,
                   models: list[tuple[str, str, str, dict[str, Any]]],
                   cases: list[tuple[str, str, str, dict[str, Any]]]) -> str:
        """Write a run with its models and cases in one transaction: it exists whole or not at all."""
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        with self.transaction() as db:
            db.execute("INSERT INTO runs (id, created_at, finished_at, status, config_json, manifest_json, suite_hash, "
                       "samples) VALUES (?,?,?,?,?,?,?,?)",
                       (run_id, time.time(), None, "running", _dump(config), _dump(manifest), suite_hash, samples))
            db.executemany("INSERT INTO run_models (run_id, position, name, backend, identity_key, spec_json) "
                           "VALUES (?,?,?,?,?,?)",
                           [(run_id, i, n, b, k, _dump(s)) for i, (n, b, k, s) in enumerate(models)])
            db.executemany("INSERT INTO run_cases VALUES (?,?,?,?,?,?)",
                           [(run_id, i, c, su, w, _dump(cj)) for i, (c, su, w, cj) in enumerate(cases)])
        return run_id

    def set_status(self, run_id: str, status: str) -> None:
        finished = time.time() if status in ("finished", "failed") else None
        with self.transaction() as db:
            db.execute("UPDATE runs SET status=?, finished_at=? WHERE id=?", (status, finished, run_id))

    def run(self, run_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT id, created_at, finished_at, status, config_json, manifest_json, suite_hash, samples, "
                              "score_version FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise WeighbridgeError(f"{self.path}: no run '{run_id}' (see `weighbridge runs`)")
        return {"id": row[0], "created_at": row[1], "finished_at": row[2], "status": row[3],
                "config": json.loads(row[4]), "manifest": json.loads(row[5]), "suite_hash": row[6], "samples": row[7],
                "score_version": row[8]}

    def latest_unfinished(self) -> str | None:
        row = self.db.execute("SELECT id FROM runs WHERE status IN ('running','interrupted') "
                              "ORDER BY created_at DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def latest_run(self) -> str | None:
        row = self.db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT r.id, r.created_at, r.status, (SELECT COUNT(*) FROM run_models m WHERE m.run_id=r.id), "
            "(SELECT COUNT(*) FROM run_cases c WHERE c.run_id=r.id), "
            "(SELECT COUNT(*) FROM generations g WHERE g.run_id=r.id), r.samples "
            "FROM runs r ORDER BY r.created_at DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "created_at": r[1], "status": r[2], "models": r[3], "cases": r[4],
                 "generations": r[5], "jobs": r[3] * r[4] * r[6]} for r in rows]

    def pass_counts(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Per run, per model: (passed, jobs) – the runs list of ``weighbridge view`` in one query."""
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for run_id, model, jobs, passed in self.db.execute(
                "SELECT run_id, model, COUNT(*), COALESCE(SUM(passed), 0) FROM generations GROUP BY run_id, model"):
            out.setdefault(run_id, {})[model] = (int(passed), int(jobs))
        return out

    def run_models(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT name, backend, identity_key, spec_json, runtime_json FROM run_models "
                               "WHERE run_id=? ORDER BY position", (run_id,)).fetchall()
        return [{"name": r[0], "backend": r[1], "identity_key": r[2], "spec": json.loads(r[3]),
                 "runtime": json.loads(r[4]) if r[4] else None} for r in rows]

    def set_model_runtime(self, run_id: str, name: str, facts: dict[str, Any]) -> None:
        """What this invocation measured while the model ran; a resumed run's newer figures replace them."""
        with self.transaction() as db:
            db.execute("UPDATE run_models SET runtime_json=? WHERE run_id=? AND name=?",
                       (_dump(facts), run_id, name))

    def run_cases(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT case_id, suite, workload, case_json FROM run_cases WHERE run_id=? "
                               "ORDER BY position", (run_id,)).fetchall()
        return [{"id": r[0], "suite": r[1], "workload": r[2], "case": json.loads(r[3])} for r in rows]

    # -- load tests ---------------------------------------------------------------------------
    def save_bench(self, *, target: str, mode: str, settings: dict[str, Any], levels: list[dict[str, Any]],
                   stopped: str | None) -> str:
        """A whole sweep in one transaction."""
        bench_id = "bench-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        with self.transaction() as db:
            db.execute("INSERT INTO bench_runs VALUES (?,?,?,?,?,?)",
                       (bench_id, time.time(), scrub(target), mode, _dump(settings), stopped))
            db.executemany("INSERT INTO bench_levels VALUES (?,?,?,?)",
                           [(bench_id, i, lv["level"], _dump(lv)) for i, lv in enumerate(levels)])
        return bench_id

    def benches(self, limit: int = 200) -> list[dict[str, Any]]:
        """Stored load tests, newest first, without their levels."""
        rows = self.db.execute("SELECT id, created_at, target, mode, settings_json FROM bench_runs "
                               "ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "created_at": r[1], "target": r[2], "mode": r[3], "settings": json.loads(r[4])}
                for r in rows]

    def bench(self, bench_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT id, created_at, target, mode, settings_json, stopped FROM bench_runs WHERE id=?",
                              (bench_id,)).fetchone()
        if row is None:
            raise WeighbridgeError(f"{self.path}: no load test '{bench_id}'")
        levels = [json.loads(r[0]) for r in self.db.execute(
            "SELECT result_json FROM bench_levels WHERE bench_id=? ORDER BY position", (bench_id,))]
        return {"id": row[0], "created_at": row[1], "target": row[2], "mode": row[3],
                "settings": json.loads(row[4]), "stopped": row[5], "levels": levels}

    # -- jobs ---------------------------------------------------------------------------------
    def done_jobs(self, run_id: str) -> set[tuple[str, str, int]]:
        """Jobs with a stored answer; failed jobs (errors) are retried on resume."""
        rows = self.db.execute("SELECT model, case_id, sample FROM generations WHERE run_id=? AND error IS NULL",
                               (run_id,)).fetchall()
        return {(m, c, s) for m, c, s in rows}

    def record(self, run_id: str, model: str, case_id: str, sample: int, cache_key: str, identity_key: str,
               generation: Generation | None, scores: list[tuple[str, Score]], *, cached: bool,
               error: str | None = None, score_key: str | None = None) -> None:
        """Store one finished job, its scores and (for fresh answers) its cache entry, atomically;
        with ``score_key``, its scores are cached under it too."""
        g = generation
        passed = None if g is None else int(Score.all_passed(scores))
        gen_dict = None if g is None else finite(scrub_obj(g.to_dict()))
        gen_json = None if gen_dict is None else json.dumps(gen_dict, ensure_ascii=False, allow_nan=False)
        with self.transaction() as db:
            db.execute("DELETE FROM generations WHERE run_id=? AND model=? AND case_id=? AND sample=?",
                       (run_id, model, case_id, sample))
            cur = db.execute(
                "INSERT INTO generations (run_id, model, case_id, sample, cache_key, cached, error, text, finish_reason,"
                " prompt_tokens, completion_tokens, token_source, latency_ms, ttft_ms, decode_ms, passed,"
                " generation_json, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, model, case_id, sample, cache_key, int(cached), scrub(error),
                 gen_dict and gen_dict["text"], gen_dict and gen_dict["finish_reason"], gen_dict and gen_dict["prompt_tokens"],
                 gen_dict and gen_dict["completion_tokens"], gen_dict and gen_dict["token_source"],
                 gen_dict and gen_dict["latency_ms"], gen_dict and gen_dict["ttft_ms"], gen_dict and gen_dict["decode_ms"],
                 passed,
                 gen_json, time.time()))
            db.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?)",
                           [(cur.lastrowid, i, name, int(s.passed), s.value, scrub(s.reason))
                            for i, (name, s) in enumerate(scores)])
            if g is not None and not cached:
                db.execute("INSERT OR REPLACE INTO response_cache VALUES (?,?,?,?)",
                           (cache_key, identity_key, gen_json, time.time()))
            if score_key is not None:
                db.execute("INSERT OR REPLACE INTO score_cache VALUES (?,?,?)",
                           (score_key, json.dumps([[n, sc.passed, sc.value, scrub(sc.reason)] for n, sc in scores],
                                                  ensure_ascii=False, allow_nan=False), time.time()))

    def cached_scores(self, key: str) -> list[tuple[str, Score]] | None:
        """Scores cached under ``key``, or None (a row that does not read as scores is a miss)."""
        row = self.db.execute("SELECT scores_json FROM score_cache WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return [(str(n), Score(bool(p), float(v), str(r))) for n, p, v, r in json.loads(row[0])]
        except (ValueError, TypeError):
            return None

    def cache_put(self, key: str, identity_key: str, generation: Generation) -> None:
        """Cache a call that is not a job of the run (a judge's verdict)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO response_cache VALUES (?,?,?,?)",
                       (key, identity_key, _dump(generation.to_dict()), time.time()))

    def new_score_version(self, run_id: str, scores: dict[int, list[tuple[str, Score]]], *, source: str,
                          cases: dict[str, Any] | None = None) -> int:
        """Re-scored answers as the run's next scored version, in one transaction: the scores they
        replace move to ``score_history`` under the version they belonged to, nothing is lost."""
        with self.transaction() as db:
            current = db.execute("SELECT score_version FROM runs WHERE id=?", (run_id,)).fetchone()
            if current is None:
                raise WeighbridgeError(f"{self.path}: no run '{run_id}'")
            old, new = current[0], current[0] + 1
            if not db.execute("SELECT 1 FROM score_versions WHERE run_id=? AND version=?", (run_id, old)).fetchone():
                db.execute("INSERT INTO score_versions VALUES (?,?,?,?,?)", (run_id, old, time.time(), "bakeoff", None))
            for gid, new_scores in scores.items():
                db.execute("INSERT INTO score_history SELECT generation_id, ?, position, scorer, passed, value, reason "
                           "FROM scores WHERE generation_id=?", (old, gid))
                db.execute("DELETE FROM scores WHERE generation_id=?", (gid,))
                db.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?)",
                               [(gid, i, n, int(sc.passed), sc.value, scrub(sc.reason)) for i, (n, sc) in enumerate(new_scores)])
                db.execute("UPDATE generations SET passed=? WHERE id=?",
                           (int(Score.all_passed(new_scores)), gid))
            db.execute("INSERT INTO score_versions VALUES (?,?,?,?,?)",
                       (run_id, new, time.time(), scrub(source), json.dumps(cases, ensure_ascii=False) if cases else None))
            db.execute("UPDATE runs SET score_version=? WHERE id=?", (new, run_id))
        return int(new)

    def score_versions(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT version, created_at, source, cases_json FROM score_versions WHERE run_id=? "
                               "ORDER BY version", (run_id,)).fetchall()
        return [{"version": r[0], "created_at": r[1], "source": r[2], "cases": json.loads(r[3]) if r[3] else None}
                for r in rows]

    def score_history(self, run_id: str, version: int) -> dict[int, list[tuple[str, Score]]]:
        """The scores a run's answers had in an earlier scored version (by generation id)."""
        out: dict[int, list[tuple[str, Score]]] = {}
        for gid, _, name, passed, value, reason in self.db.execute(
                "SELECT h.generation_id, h.position, h.scorer, h.passed, h.value, h.reason FROM score_history h "
                "JOIN generations g ON g.id = h.generation_id WHERE g.run_id=? AND h.version=? "
                "ORDER BY h.generation_id, h.position", (run_id, version)):
            out.setdefault(gid, []).append((name, Score(bool(passed), value, reason)))
        return out

    def cached(self, key: str) -> Generation | None:
        row = self.db.execute("SELECT generation_json FROM response_cache WHERE key=?", (key,)).fetchone()
        return Generation.from_dict(json.loads(row[0])) if row else None

    def generations(self, run_id: str) -> list[StoredGeneration]:
        rows = self.db.execute("SELECT id, model, case_id, sample, cached, error, passed, generation_json "
                               "FROM generations WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
        scores: dict[int, list[tuple[str, Score]]] = {}
        for gid, _, name, passed, value, reason in self.db.execute(
                "SELECT s.generation_id, s.position, s.scorer, s.passed, s.value, s.reason FROM scores s "
                "JOIN generations g ON g.id = s.generation_id WHERE g.run_id=? ORDER BY s.generation_id, s.position",
                (run_id,)):
            scores.setdefault(gid, []).append((name, Score(bool(passed), value, reason)))
        return [StoredGeneration(model=r[1], case_id=r[2], sample=r[3], cached=bool(r[4]), error=r[5],
                                 passed=bool(r[6]), generation=Generation.from_dict(json.loads(r[7])) if r[7] else None,
                                 scores=scores.get(r[0], []), id=r[0]) for r in rows]

