"""One migration runner for every database: the run store and the gateway's state file (SQLite), the
gateway's keys and its audit log in Postgres. What ran is recorded in one table per database, a
database newer than the code is refused before anything is written, and files from before the
record keep working."""

import secrets
import sqlite3

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli
from weighbridge.gateway import state
from weighbridge.gateway.audit import HEAD_SCHEMA, LOG_SCHEMA, PostgresAuditSink, PostgresHead
from weighbridge.gateway.shared import PG_SCHEMA, PgKeys
from weighbridge.storage.migrations import TABLE, SchemaTooNew, statements
from weighbridge.storage.store import Store
from weighbridge.storage.store_schema import MIGRATIONS

from .conftest import write

runner = CliRunner(env={"COLUMNS": "250"})


def recorded(db, schema: str) -> list[int]:
    return [r[0] for r in db.execute(f"SELECT number FROM {TABLE} WHERE schema = ? ORDER BY number", (schema,))]


def test_the_store_and_the_gateway_state_record_their_migrations_in_one_table(tmp_path):
    Store(tmp_path / "s.db").close()
    state.connect(str(tmp_path / "gateway.db")).close()
    assert recorded(sqlite3.connect(tmp_path / "s.db"), "store") == list(range(1, len(MIGRATIONS) + 1))
    assert recorded(sqlite3.connect(tmp_path / "gateway.db"), "gateway") == [1]
    names = [r[0] for r in sqlite3.connect(tmp_path / "s.db").execute(f"SELECT name FROM {TABLE} ORDER BY number")]
    assert names == [m.name for m in MIGRATIONS]


def test_a_gateway_state_file_newer_than_the_code_is_refused_and_left_alone(tmp_path):
    p = tmp_path / "gateway.db"
    state.connect(str(p)).close()
    con = sqlite3.connect(p)
    con.execute(f"INSERT INTO {TABLE} VALUES ('gateway', 2, 'from the future', 0)")
    con.commit()
    con.close()
    before = p.read_bytes()
    with pytest.raises(SchemaTooNew, match="made by a newer weighbridge"):
        state.connect(str(p))
    assert p.read_bytes() == before
    plan = write(tmp_path / "plan.yaml", "routes:\n  chat:\n    upstreams: [{name: u, base_url: 'http://127.0.0.1:9/v1', "
                                         "model: m}]\n")
    r = runner.invoke(cli, ["keys", "list", "--plan", str(plan)])
    assert r.exit_code == 2 and "made by a newer weighbridge" in r.output and str(p) in r.output, r.output
    assert "Traceback" not in r.output


def test_files_from_before_the_record_adopt_their_user_version_once(tmp_path):
    # a store and a state file as the previous weighbridge left them: tables made, number in user_version
    old = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    for m in MIGRATIONS:
        for stmt in statements(m.sql):
            old.execute(stmt)
    old.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
    old.close()
    old = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    for stmt in statements(state.SCHEMA.migrations[0].sql):
        old.execute(stmt)
    old.execute("PRAGMA user_version=1")
    old.execute("INSERT INTO keys (id, name, hash, created) VALUES ('k1', 'team', 'h', 0)")
    old.close()
    s = Store(tmp_path / "s.db")
    assert s.schema_version == len(MIGRATIONS)
    s.close()
    db = state.connect(str(tmp_path / "gateway.db"))
    assert [k.id for k in state.all_keys(db)] == ["k1"]  # nothing re-created, nothing lost
    assert recorded(db, "gateway") == [1]
    assert [r[0] for r in db.execute(f"SELECT name FROM {TABLE}")] == [state.SCHEMA.migrations[0].name + " (adopted)"]


def test_a_read_only_store_at_the_latest_schema_still_opens(tmp_path):
    p = tmp_path / "s.db"
    Store(p).close()
    ro = sqlite3.connect(f"file:{p}?mode=ro", uri=True, isolation_level=None)
    from weighbridge.storage.migrations import migrate_sqlite
    from weighbridge.storage.store import SCHEMA

    assert migrate_sqlite(ro, SCHEMA, str(p)) == len(MIGRATIONS)  # read, never written


def test_statements_split_where_sqlite_says_a_statement_ends():
    sql = "CREATE TABLE a (x TEXT DEFAULT 'a;b');\n\nINSERT INTO a VALUES ('c;\nd');\n"
    assert statements(sql) == ["CREATE TABLE a (x TEXT DEFAULT 'a;b');", "INSERT INTO a VALUES ('c;\nd');"]
    with pytest.raises(ValueError, match="incomplete"):
        statements("CREATE TABLE b (x TEXT")


@pytest.fixture()
def pg_db(postgres_url):
    import psycopg

    name = "wb_mig_" + secrets.token_hex(4)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name


def test_postgres_keys_and_audit_share_one_record_and_a_newer_one_is_refused(pg_db):
    import psycopg

    PgKeys(pg_db).close()
    PostgresAuditSink(pg_db).close()
    PostgresHead(pg_db, None).close()
    PgKeys(pg_db).close()  # a second start migrates nothing
    with psycopg.connect(pg_db, autocommit=True) as conn:
        rows = conn.execute(f"SELECT schema, number FROM {TABLE} ORDER BY schema").fetchall()
        assert rows == [(s.name, 1) for s in sorted((HEAD_SCHEMA, LOG_SCHEMA, PG_SCHEMA), key=lambda s: s.name)]
        conn.execute(f"INSERT INTO {TABLE} VALUES ('gateway-keys', 2, 'from the future', 0)")
    with pytest.raises(SchemaTooNew, match="made by a newer weighbridge .*every gateway sharing"):
        PgKeys(pg_db)


def test_postgres_state_from_before_the_record_is_adopted(pg_db):
    import psycopg

    with psycopg.connect(pg_db, autocommit=True) as conn:  # as the previous weighbridge left it
        conn.execute("CREATE TABLE weighbridge_state_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO weighbridge_state_version VALUES (1)")
        for stmt in statements(PG_SCHEMA.migrations[0].sql):
            conn.execute(stmt)
        conn.execute("INSERT INTO weighbridge_keys (id, name, hash, created) VALUES ('k1', 'team', 'h', 0)")
    keys = PgKeys(pg_db)
    assert [k.id for k in keys.all_keys()] == ["k1"]
    keys.close()
    with psycopg.connect(pg_db, autocommit=True) as conn:
        assert conn.execute(f"SELECT name FROM {TABLE}").fetchall() == [(PG_SCHEMA.migrations[0].name + " (adopted)",)]
