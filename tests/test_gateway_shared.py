"""Two `weighbridge serve` processes sharing one real Postgres (keys, settled spend, audit log) and
one real Redis (rate windows, budget reservations): concurrent requests split across both never
spend a key's budget twice, the rate limit holds across them, the audit chain verifies, and with
Redis gone budgets fail closed."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli

from .conftest import write
from .serve_process import serve
from .test_gateway_policies import create_key_with_id

runner = CliRunner()


@pytest.fixture()
def shared_plan(tmp_path, postgres_url, redis_url, llama_server):
    import psycopg

    db = "wb_shared_" + secrets.token_hex(4)  # a database of its own: no other test's tables
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    url = postgres_url.rsplit("/", 1)[0] + "/" + db
    plan = write(tmp_path / "plan.yaml", f"""\
routes:
  chat:
    upstreams: [{{name: smol, base_url: "{llama_server}", model: smollm2}}]
state: "{url}"
redis: "{redis_url}"
audit: {{url: "{url}"}}
""")
    return str(plan), url


async def _burst(bases: list[str], token: str, n: int, max_tokens: int = 2) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120) as client:
        async def one(i: int) -> httpx.Response:
            return await client.post(bases[i % len(bases)] + "/v1/chat/completions",
                                     headers={"authorization": f"Bearer {token}"},
                                     json={"model": "chat", "max_tokens": max_tokens,
                                           "messages": [{"role": "user", "content": f"say hi {i}"}]})
        return list(await asyncio.gather(*(one(i) for i in range(n))))


@pytest.mark.slow
def test_two_processes_share_one_budget_and_one_rate_limit(shared_plan):
    import psycopg

    plan, url = shared_plan
    budget = 400
    token, key_id = create_key_with_id(plan, "--max-tokens", str(budget))
    rate_token, rate_id = create_key_with_id(plan, "--rpm", "12")
    with serve(plan) as (a, _), serve(plan) as (b, _):
        answers = asyncio.run(_burst([a, b], token, 200))
        ok = [r for r in answers if r.status_code == 200]
        refused = [r for r in answers if r.status_code == 429]
        assert len(ok) + len(refused) == 200, {r.status_code for r in answers}
        assert ok and refused and all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
        assert {r.headers.get("x-weighbridge-route") for r in ok} == {"chat"}
        used = sum(r.json()["usage"]["total_tokens"] for r in ok)
        deadline = time.time() + 10  # the spend reaches Postgres from a background thread, batched
        while True:
            with psycopg.connect(url) as conn:
                settled = conn.execute("SELECT tokens, requests FROM weighbridge_spend WHERE key_id=%s",
                                       (key_id,)).fetchone()
            if (settled and settled[1] == len(ok)) or time.time() > deadline:
                break
            time.sleep(0.2)
        assert settled[0] == used and settled[1] == len(ok)  # every answered request settled once, in Postgres
        assert used <= budget  # both processes together never spent more than the key's budget
        print(f"shared budget: {len(ok)} answered, {len(refused)} refused, {used} of {budget} tokens settled")

        # the rate limit: 12 a minute with bursts of 12, for both processes together
        answers = asyncio.run(_burst([a, b], rate_token, 40, max_tokens=1))
        ok = [r for r in answers if r.status_code == 200]
        limited = [r for r in answers if r.status_code == 429]
        assert 12 <= len(ok) <= 14 and len(ok) + len(limited) == 40  # + what refills (0.2/s) while it runs
        assert all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in limited)
        print(f"shared rate limit 12/min: {len(ok)} of 40 let through across two processes")
        r = runner.invoke(cli, ["keys", "list", "--plan", plan])
        assert r.exit_code == 0 and key_id in r.output and rate_id in r.output
    r = runner.invoke(cli, ["audit", "verify", "--plan", plan])
    assert r.exit_code == 0, r.output  # one chain, written by two processes


def test_shared_state_needs_redis_and_fails_closed_without_it(tmp_path, postgres_url, llama_server):
    from weighbridge.core.errors import ConfigError
    from weighbridge.gateway.plan import load_plan

    base = f"routes:\n  chat:\n    upstreams: [{{name: s, base_url: '{llama_server}', model: smollm2}}]\n"
    with pytest.raises(ConfigError, match="add redis: redis://"):
        load_plan(write(tmp_path / "p1.yaml", base + f"state: '{postgres_url}'\n"))
    with pytest.raises(ConfigError, match="is not a redis:// URL"):
        load_plan(write(tmp_path / "p2.yaml", base + "redis: 'http://localhost'\n"))
    # Redis unreachable: a keyed request is refused with 503, never let through unmetered
    plan = write(tmp_path / "p3.yaml", base + "redis: 'redis://127.0.0.1:1/0'\n")
    token, _ = create_key_with_id(str(plan), "--max-tokens", "100")
    with serve(str(plan)) as (gw, _):
        r = httpx.post(gw + "/v1/chat/completions", headers={"authorization": f"Bearer {token}"}, timeout=30,
                       json={"model": "chat", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and r.json()["error"]["code"] == "budget_store_unavailable"
    # … while the cache, an optimisation, just misses: an unkeyed gateway on the same dead Redis answers
    plan = write(tmp_path / "p4.yaml", base.replace("model: smollm2}]", "model: smollm2}]\n    cache: {ttl_s: 60}")
                 + "redis: 'redis://127.0.0.1:1/0'\nstate: p4.db\n")
    with serve(str(plan)) as (gw, _):
        r = httpx.post(gw + "/v1/chat/completions", timeout=30,
                       json={"model": "chat", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["x-weighbridge-cache"] == "miss"


def test_an_unreachable_postgres_is_a_clear_error_not_a_traceback(tmp_path):
    plan = write(tmp_path / "p.yaml", "routes:\n  chat:\n    upstreams: [{name: s, base_url: 'http://127.0.0.1:9/v1', "
                                      "model: m}]\nstate: 'postgresql://wb:s3cret@127.0.0.1:1/nope'\n"
                                      "redis: 'redis://127.0.0.1:1/0'\n")
    for args in (["serve", "--plan", str(plan)], ["keys", "list", "--plan", str(plan)],
                 ["keys", "create", "x", "--plan", str(plan)]):
        r = runner.invoke(cli, args)
        out = " ".join(r.output.split())
        assert r.exit_code == 2, (args, r.output, r.exception)
        assert "cannot reach the state database postgresql://wb:***@127.0.0.1:1/nope" in out
        assert "Traceback" not in r.output and "s3cret" not in r.output
