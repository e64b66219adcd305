"""Gateway state shared by many processes on any number of machines: API keys and settled spend in
Postgres (``state: postgresql://…``), rate-limit windows and budget reservations in Redis
(``redis: redis://…``), so N gateway processes hold one budget per key and never overspend it
together.

Each check is one Lua script run atomically by Redis: the token bucket of a key's ``rpm`` (on
Redis's own clock, so the processes' clocks do not matter), and "spent + held + this request ≤
the limit, then hold it" for a reservation; a settlement releases the hold and adds what the
upstream reported. The settled spend is also added to Postgres in the same call, so it survives a
Redis restart: a budget whose counters are gone is re-read from Postgres on its next use (holds of
requests in flight at that moment are lost, and the budget errs towards allowing until they end).
The database write happens on a background thread, batched: no answer waits for it. A key without
a budget costs no Redis call at all; one with an ``rpm`` costs one, a budget one more each way.

Redis unreachable: budgets and rate limits **fail closed** (503 ``budget_store_unavailable``),
never open. Postgres unreachable: keys cannot be reloaded (the last loaded set keeps serving), and
a settlement that cannot be written there is counted (``settle_failures``) and logged; Redis still
holds it, so the budget is enforced, but `weighbridge keys list` (which reads Postgres) shows less.
"""

from __future__ import annotations

import json
import logging
import time

from ..core.errors import MissingDependency
from ..storage.migrations import Migration, Schema, migrate_postgres
from . import state
from .auth import Denied, Guard, Reservation, period_of

log = logging.getLogger("weighbridge.gateway")

PG_SCHEMA = Schema("gateway-keys", (
    Migration("keys and settled spend", state.keys_and_spend("weighbridge_", "DOUBLE PRECISION", "BIGINT")),
), newer_hint="upgrade weighbridge (every gateway sharing this database must run the same version)",
    legacy_pg_table="weighbridge_state_version")


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class PgKeys:
    """Keys and settled spend in Postgres: the same rows as the SQLite state file's ``keys``/``spend``."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - the test extra installs it
            raise MissingDependency("state: postgresql://… needs psycopg: pip install 'weighbridge[postgres]'") from None
        from ..core.errors import WeighbridgeError
        from .audit import hide_password

        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WeighbridgeError(f"cannot reach the state database {hide_password(url)}: {reason}. Is Postgres "
                                   "running there, and does the plan's state: URL name the right user and database?"
                                   ) from None
        migrate_postgres(self.conn, PG_SCHEMA, hide_password(url))

    def insert_key(self, row: state.KeyRow) -> None:
        self.conn.execute(f"INSERT INTO weighbridge_keys ({state.KEY_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                          (row.id, row.name, row.hash, row.created, row.revoked, row.rpm, row.max_tokens, row.max_usd,
                           row.period, json.dumps(row.routes) if row.routes else None))

    def all_keys(self) -> list[state.KeyRow]:
        rows = self.conn.execute(f"SELECT {state.KEY_COLS} FROM weighbridge_keys ORDER BY created").fetchall()
        return [state.key_row(tuple(r)) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        cur = self.conn.execute("UPDATE weighbridge_keys SET revoked=%s WHERE id=%s AND revoked IS NULL",
                                (time.time(), key_id))
        return cur.rowcount == 1

    def spend_of(self, key_id: str, period: str) -> tuple[int, float, int]:
        row = self.conn.execute("SELECT tokens, usd, requests FROM weighbridge_spend WHERE key_id=%s AND period=%s",
                                (key_id, period)).fetchone()
        return (int(row[0]), float(row[1]), int(row[2])) if row else (0, 0.0, 0)

    def spend_totals(self) -> dict[str, tuple[int, float, int]]:
        rows = self.conn.execute("SELECT key_id, sum(tokens), sum(usd), sum(requests) FROM weighbridge_spend "
                                 "GROUP BY key_id").fetchall()
        return {r[0]: (int(r[1]), float(r[2]), int(r[3])) for r in rows}

    def add_spend(self, key_id: str, period: str, tokens: int, usd: float) -> None:
        self.conn.execute("INSERT INTO weighbridge_spend (key_id, period, tokens, usd, requests) VALUES (%s,%s,%s,%s,1) "
                          "ON CONFLICT (key_id, period) DO UPDATE SET tokens=weighbridge_spend.tokens+excluded.tokens, "
                          "usd=weighbridge_spend.usd+excluded.usd, requests=weighbridge_spend.requests+1",
                          (key_id, period, tokens, usd))

    def close(self) -> None:
        self.conn.close()


class SqliteKeys:
    """The same interface over the SQLite state file, for processes on one machine sharing Redis."""

    def __init__(self, path: str) -> None:
        self.db = state.connect(path)

    def insert_key(self, row: state.KeyRow) -> None:
        state.insert_key(self.db, row)

    def all_keys(self) -> list[state.KeyRow]:
        return state.all_keys(self.db)

    def revoke_key(self, key_id: str) -> bool:
        return state.revoke_key(self.db, key_id)

    def spend_of(self, key_id: str, period: str) -> tuple[int, float, int]:
        return state.spend_of(self.db, key_id, period)

    def spend_totals(self) -> dict[str, tuple[int, float, int]]:
        return state.spend_totals(self.db)

    def add_spend(self, key_id: str, period: str, tokens: int, usd: float) -> None:
        state.add_spend(self.db, key_id, period, tokens, usd)

    def close(self) -> None:
        self.db.close()


def open_keys(url: str) -> PgKeys | SqliteKeys:
    return PgKeys(url) if is_postgres(url) else SqliteKeys(url)


# KEYS[1] bucket hash; ARGV[1] rpm. Redis's TIME is the one clock every process shares.
_RATE = """
local rpm = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or rpm)
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
tokens = math.min(rpm, tokens + (now - at) * rpm / 60)
if tokens < 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('EXPIRE', KEYS[1], 3600)
  return {0, tostring((1 - tokens) * 60 / rpm)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return {1, '0'}
"""

# KEYS[1] budget hash; ARGV: tokens, usd, max_tokens (-1: none), max_usd (-1: none), settled tokens, settled usd
# (from the database; '' when not read yet: a budget Redis does not hold yet answers {2} and is asked again
# with them, so the common case is one round trip)
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[5] == '' then return {2, '', '0', '0'} end
  redis.call('HSET', KEYS[1], 'spent_t', ARGV[5], 'spent_u', ARGV[6], 'held_t', '0', 'held_u', '0')
end
local st = tonumber(redis.call('HGET', KEYS[1], 'spent_t'))
local su = tonumber(redis.call('HGET', KEYS[1], 'spent_u'))
local ht = tonumber(redis.call('HGET', KEYS[1], 'held_t'))
local hu = tonumber(redis.call('HGET', KEYS[1], 'held_u'))
local t, u = tonumber(ARGV[1]), tonumber(ARGV[2])
local mt, mu = tonumber(ARGV[3]), tonumber(ARGV[4])
if mt >= 0 and st + ht + t > mt then return {0, 'tokens', tostring(st), tostring(ht)} end
if mu >= 0 and su + hu + u > mu + 1e-12 then return {0, 'usd', tostring(su), tostring(hu)} end
redis.call('HSET', KEYS[1], 'held_t', tostring(ht + t), 'held_u', tostring(hu + u))
return {1, '', tostring(st), tostring(ht)}
"""

# KEYS[1] budget hash; ARGV: held tokens, held usd (to release), spent tokens, spent usd (to add)
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ht = math.max(0, tonumber(redis.call('HGET', KEYS[1], 'held_t')) - tonumber(ARGV[1]))
local hu = math.max(0, tonumber(redis.call('HGET', KEYS[1], 'held_u')) - tonumber(ARGV[2]))
local st = tonumber(redis.call('HGET', KEYS[1], 'spent_t')) + tonumber(ARGV[3])
local su = tonumber(redis.call('HGET', KEYS[1], 'spent_u')) + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'held_t', tostring(ht), 'held_u', tostring(hu), 'spent_t', tostring(st), 'spent_u', tostring(su))
return 1
"""


class _SpendWriter:
    """Settled spend goes to the database from this thread, in batches, off the event loop: a
    request's answer never waits for it (Redis already holds the figure that budgets are checked
    against)."""

    def __init__(self, keys: PgKeys | SqliteKeys) -> None:
        import queue
        import threading

        self.keys = keys
        self.q: "queue.Queue[tuple[str, str, int, float] | None]" = queue.Queue()
        self.failures = 0
        self.thread = threading.Thread(target=self._run, name="weighbridge-spend", daemon=True)
        self.thread.start()

    def add(self, key_id: str, period: str, tokens: int, usd: float) -> None:
        self.q.put((key_id, period, tokens, usd))

    def _run(self) -> None:
        from .writer import next_batch

        stop = False
        while not stop:
            batch = next_batch(self.q)
            stop = None in batch
            for job in batch:
                if job is None:
                    continue
                try:
                    self.keys.add_spend(*job)
                except Exception:  # noqa: BLE001 - counted and logged; Redis still enforces the budget
                    self.failures += 1
                    log.exception("writing settled spend to the database failed")

    def close(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=30)


class SharedGuard(Guard):
    """``Guard`` with its rate windows and reservations in Redis and its keys and spend in ``keys``."""

    persists_spend = True  # settle() writes the spend itself: the process-local writer must not add it again

    def __init__(self, keys: PgKeys | SqliteKeys, redis_url: str, *, reload_s: float = 2.0, prefix: str = "wb") -> None:
        import redis

        self.keys = keys
        self.prefix = prefix
        self.r = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._rate = self.r.register_script(_RATE)
        self._reserve = self.r.register_script(_RESERVE)
        self._settle = self.r.register_script(_SETTLE)
        self.settle_failures = 0
        self.spend = _SpendWriter(keys)
        super().__init__(None, reload_s=reload_s)  # type: ignore[arg-type]

    def close(self) -> None:
        """Flush the settled spend still queued for the database."""
        self.spend.close()

    def reload(self) -> None:
        try:
            rows = self.keys.all_keys()
        except Exception:  # noqa: BLE001 - keep serving the last loaded keys while the database is away
            log.exception("reloading keys failed; the last loaded keys stay in force")
            self._loaded_at = time.monotonic()
            return
        self.any_keys = bool(rows)
        self.by_hash = {r.hash: r for r in rows if r.revoked is None}
        self._loaded_at = time.monotonic()

    def _unavailable(self, e: Exception) -> Denied:
        return Denied(503, f"the shared budget store (Redis) is unavailable ({type(e).__name__}); budgets and rate "
                           "limits fail closed", "budget_store_unavailable", retry_after=1.0)

    def rate(self, key: state.KeyRow, now: float | None = None) -> None:
        if not key.rpm:
            return
        import redis

        try:
            ok, wait = self._rate(keys=[f"{self.prefix}:rate:{key.id}"], args=[key.rpm])
        except redis.RedisError as e:
            raise self._unavailable(e) from None
        if not int(ok):
            raise Denied(429, f"rate limit: {key.rpm} requests per minute for key {key.id}", "rate_limit_exceeded",
                         retry_after=float(wait))

    def _budget_key(self, key_id: str, period: str) -> str:
        return f"{self.prefix}:budget:{key_id}:{period}"

    def reserve(self, key: state.KeyRow, tokens: int, usd: float) -> Reservation:
        import redis

        period = period_of(key.period)
        if key.max_tokens is None and key.max_usd is None:  # nothing to enforce: only the spend is recorded
            return Reservation(key.id, period, 0, 0.0, held=False)
        hkey = self._budget_key(key.id, period)
        limits = [-1 if key.max_tokens is None else key.max_tokens, -1 if key.max_usd is None else repr(float(key.max_usd))]
        try:
            ok, what, spent_s, held_s = self._reserve(keys=[hkey], args=[tokens, repr(float(usd)), *limits, "", ""])
            if int(ok) == 2:  # first use (or Redis lost it): the settled spend comes from the database
                spent = self.keys.spend_of(key.id, period)
                ok, what, spent_s, held_s = self._reserve(keys=[hkey], args=[tokens, repr(float(usd)), *limits,
                                                                              spent[0], repr(float(spent[1]))])
        except redis.RedisError as e:
            raise self._unavailable(e) from None
        if not int(ok):
            what = what.decode() if isinstance(what, bytes) else what
            spent_v, held_v = float(spent_s), float(held_s)
            if what == "tokens":
                raise Denied(429, f"token budget of key {key.id} exhausted: {int(spent_v)} used + {int(held_v)} held "
                                  f"+ {tokens} for this request > {key.max_tokens} ({key.period}, shared by every "
                                  "gateway process)", "insufficient_quota")
            raise Denied(429, f"dollar budget of key {key.id} exhausted: ${spent_v:.6f} used + ${held_v:.6f} held + "
                              f"${usd:.6f} for this request > ${key.max_usd} ({key.period}, shared by every gateway "
                              "process)", "insufficient_quota")
        return Reservation(key.id, period, tokens, usd)

    def settle(self, r: Reservation, tokens: int, usd: float) -> None:
        if r.held:
            try:
                self._settle(keys=[self._budget_key(r.key_id, r.period)],
                             args=[r.tokens, repr(float(r.usd)), tokens, repr(float(usd))])
            except Exception:  # noqa: BLE001 - the answer is already out; count it, keep the spend for the database
                self.settle_failures += 1
                log.exception("settling a reservation in Redis failed")
        if tokens or usd:
            self.spend.add(r.key_id, r.period, tokens, usd)
