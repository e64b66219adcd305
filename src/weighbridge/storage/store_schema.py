"""The run store's tables, as numbered migrations for the one runner (``migrations.py``).

A new table or column is a new migration at the end; a migration that has shipped is never edited
(stores out there have run it already).
"""

from __future__ import annotations

from .migrations import Migration, Schema

MIGRATIONS: tuple[Migration, ...] = (
    Migration("runs, cases, generations, scores, response cache", """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL CHECK (status IN ('running', 'interrupted', 'finished', 'failed')),
        config_json TEXT NOT NULL,
        manifest_json TEXT NOT NULL,
        suite_hash TEXT NOT NULL,
        samples INTEGER NOT NULL
    );
    CREATE TABLE run_models (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        backend TEXT NOT NULL,
        identity_key TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE run_cases (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        case_id TEXT NOT NULL,
        suite TEXT NOT NULL,
        workload TEXT NOT NULL,
        case_json TEXT NOT NULL,
        PRIMARY KEY (run_id, case_id)
    );
    CREATE TABLE generations (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        case_id TEXT NOT NULL,
        sample INTEGER NOT NULL,
        cache_key TEXT NOT NULL,
        cached INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        text TEXT,
        finish_reason TEXT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        token_source TEXT,
        latency_ms REAL,
        ttft_ms REAL,
        decode_ms REAL,
        passed INTEGER,
        generation_json TEXT,
        created_at REAL NOT NULL,
        UNIQUE (run_id, model, case_id, sample)
    );
    CREATE TABLE scores (
        generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        scorer TEXT NOT NULL,
        passed INTEGER NOT NULL,
        value REAL NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (generation_id, position)
    );
    CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        identity_key TEXT NOT NULL,
        generation_json TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX generations_run ON generations(run_id, model);
    """),
    Migration("load tests (weighbridge bench): one row per sweep, one per level", """
    CREATE TABLE bench_runs (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        target TEXT NOT NULL,
        mode TEXT NOT NULL,
        settings_json TEXT NOT NULL,
        stopped TEXT
    );
    CREATE TABLE bench_levels (
        bench_id TEXT NOT NULL REFERENCES bench_runs(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        level REAL NOT NULL,
        result_json TEXT NOT NULL,
        PRIMARY KEY (bench_id, position)
    );
    """),
    Migration("what was measured while a model ran (resident memory, load time), per run", """
    ALTER TABLE run_models ADD COLUMN runtime_json TEXT;
    """),
    Migration("scored versions of a run: a rescore keeps the scores it replaces", """
    ALTER TABLE runs ADD COLUMN score_version INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE score_versions (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        source TEXT NOT NULL,
        cases_json TEXT,
        PRIMARY KEY (run_id, version)
    );
    CREATE TABLE score_history (
        generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        position INTEGER NOT NULL,
        scorer TEXT NOT NULL,
        passed INTEGER NOT NULL,
        value REAL NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (generation_id, version, position)
    );
    """),
    Migration("scores cached with the answers they judge (see eval/score_cache.py)", """
    CREATE TABLE score_cache (
        key TEXT PRIMARY KEY,
        scores_json TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """),
)
SCHEMA = Schema("store", MIGRATIONS, newer_hint="upgrade weighbridge, or give --store another file",
                legacy_user_version=True)

__all__ = ["MIGRATIONS", "SCHEMA"]
