import sqlite3

import pytest

from weighbridge.backends.base import Generation
from weighbridge.core.errors import WeighbridgeError
from weighbridge.scorers import Score
from weighbridge.storage.store import Store
from weighbridge.storage.store_schema import MIGRATIONS


def gen(text="hi"):
    return Generation(text=text, finish_reason="stop", prompt_tokens=3, completion_tokens=1, token_source="server",
                      latency_ms=10.0, ttft_ms=5.0, decode_ms=1.0)


def new_run(store):
    return store.create_run(config={}, manifest={"m": 1}, suite_hash="h", samples=1,
                            models=[("a", "openai", "k", {})], cases=[("c1", "s", "general", {"id": "c1"})])


def test_migrations_are_numbered_and_idempotent(tmp_path):
    p = tmp_path / "s.db"
    assert Store(p).schema_version == len(MIGRATIONS)
    assert Store(p).schema_version == len(MIGRATIONS)
    assert sqlite3.connect(p).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    p = tmp_path / "s.db"
    Store(p).close()
    con = sqlite3.connect(p)
    con.execute(f"INSERT INTO weighbridge_migrations VALUES ('store', {len(MIGRATIONS) + 1}, 'from the future', 0)")
    con.commit()
    con.close()
    with pytest.raises(WeighbridgeError, match="newer weighbridge"):
        Store(p)


def test_not_a_database_is_a_clear_error(tmp_path):
    p = tmp_path / "s.db"
    p.write_text("this is a text file, not SQLite" * 100)
    with pytest.raises(WeighbridgeError, match="the store is damaged"):
        Store(p)


def test_record_stores_generation_scores_and_cache_together(tmp_path):
    s = Store(tmp_path / "s.db")
    run = new_run(s)
    s.record(run, "a", "c1", 0, "key1", "k", gen(), [("exact", Score(True, 1.0, "ok"))], cached=False)
    assert s.cached("key1").text == "hi"
    rows = s.generations(run)
    assert len(rows) == 1 and rows[0].passed and rows[0].scores[0][1].reason == "ok"
    # recording the same job again replaces it (a retried error), never duplicates it
    s.record(run, "a", "c1", 0, "key1", "k", gen("again"), [("exact", Score(False, 0.0, "no"))], cached=True)
    rows = s.generations(run)
    assert len(rows) == 1 and rows[0].generation.text == "again" and not rows[0].passed
    assert s.cached("key1").text == "hi"  # a cached copy does not rewrite the cache


def test_a_failed_transaction_leaves_nothing_half_written(tmp_path):
    s = Store(tmp_path / "s.db")
    run = new_run(s)
    with pytest.raises(sqlite3.IntegrityError):
        # scores for a job must be unique per position: the second insert fails, the whole job rolls back
        with s.transaction() as db:
            db.execute("INSERT INTO generations (run_id, model, case_id, sample, cache_key, created_at) "
                       "VALUES (?, 'a', 'c1', 0, 'k', 0)", (run,))
            db.execute("INSERT INTO generations (run_id, model, case_id, sample, cache_key, created_at) "
                       "VALUES (?, 'a', 'c1', 0, 'k', 0)", (run,))
    assert s.generations(run) == []


def test_unknown_run_is_a_clear_error(tmp_path):
    with pytest.raises(WeighbridgeError, match="no run 'nope'"):
        Store(tmp_path / "s.db").run("nope")
