"""`serve` and the gateway's `keys` and `audit` groups."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..core.errors import WeighbridgeError

from ..report.jsonreport import dumps as dumps_json
from ..report.safe import term
from ..report.tables import keep_ids_whole
from ..core.net import binds_loopback_only
from .common import _fail, _plan, app, console, err_console


@app.command()
def serve(plan: Path = typer.Option(..., "--plan", help="Routing plan YAML."),
          host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
          port: int = typer.Option(8080, "--port", min=1, max=65535),
          threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per llama.cpp server started "
                                                                        "for bundled/path upstreams."),
          smoke: Optional[Path] = typer.Option(None, "--smoke", help="Send this YAML list of requests through the "
                                                                     "gateway, print what happened, verify the audit "
                                                                     "chain and stop."),
          api_key_env: str = typer.Option("WEIGHBRIDGE_API_KEY", "--api-key-env",
                                          help="With --smoke: env var holding a key, when the plan has keys."),
          workers: int = typer.Option(1, "--workers", min=1, max=256, help="Gateway processes on the one port "
                                      "(needs redis: in the plan, so they share rate limits and budgets)."),
          fd: Optional[int] = typer.Option(None, "--fd", hidden=True, help="A listening socket from the supervisor.")
          ) -> None:
    """Run the OpenAI-compatible gateway in front of the plan's upstreams.

    SIGTERM drains it: /readyz answers 503 for http.drain_s, then it stops accepting, finishes what is in flight (up to http.shutdown_grace_s), flushes the audit log and exits 0."""
    import contextlib

    from ..gateway.http_limits import DrainingServer

    from ..gateway.admin import has_keys
    from ..gateway.app import create_app
    from ..gateway.http_limits import uvicorn_config

    the_plan = _plan(plan)
    loopback = binds_loopback_only(host)
    try:
        keyed = has_keys(the_plan)
    except WeighbridgeError as e:
        raise _fail(e) from None
    if not loopback and not keyed:
        raise _fail(WeighbridgeError(f"refusing to bind {host}: no API keys in {the_plan.resolve(the_plan.state)}, "
                                     "so anyone who can reach it could use it. Create one with 'weighbridge keys "
                                     "create NAME --plan …', or serve loopback (127.0.0.1 or ::1) only"))
    if workers > 1:
        from ..gateway.workers import supervise

        local = [u.name for r in the_plan.routes.values() for u in r.all_upstreams() if u.base_url is None]
        if not the_plan.shared:
            raise _fail(WeighbridgeError(
                f"--workers {workers} needs rate limits and budgets shared between the processes, and "
                f"{the_plan.resolve(the_plan.state)} keeps them per process: add redis: redis://… to the plan "
                "(and state: postgresql://… to share keys and spend across machines), or serve one worker"))
        if local or smoke is not None:
            raise _fail(WeighbridgeError("--workers serves upstreams by URL only: start the model servers of "
                                         f"{', '.join(local) or 'the plan'} yourself and give their base_url"
                                         if local else "--smoke runs in one process: drop --workers"))
        raise typer.Exit(supervise(plan, host, port, workers, lambda line: console.print(line, highlight=False)))
    from ..gateway.local import start_local_upstreams
    from ..gateway.smoke import load_requests

    try:  # a bad smoke file fails before any model server starts
        smoke_requests = load_requests(smoke) if smoke is not None else None
    except WeighbridgeError as e:
        raise _fail(e) from None
    with contextlib.ExitStack() as stack:
        try:
            for line in start_local_upstreams(the_plan, stack, threads):
                console.print(f"started llama.cpp server: {line}", highlight=False)
        except WeighbridgeError as e:
            raise _fail(e) from None
        if smoke_requests is not None:
            _smoke(the_plan, smoke_requests, os.environ.get(api_key_env))
            return
        app_ = create_app(the_plan)
        console.print(f"weighbridge gateway on http://{host}:{port}/v1 · routes: {', '.join(the_plan.routes)} · "
                      f"{'API keys required' if keyed else 'no API keys (loopback only)'} · audit: "
                      f"{app_.state.gateway.writer.sink.where} "
                      f"({'signed' if app_.state.gateway.audit_key else 'unsigned: set ' + the_plan.audit.hmac_key_env})"
                      f", head in {the_plan.audit_head()}", highlight=False)
        server = DrainingServer(uvicorn_config(app_, the_plan, host, port), app_.state.gateway, the_plan.http.drain_s)
        if fd is not None:  # a worker: accept on the supervisor's socket
            from ..gateway.workers import inherited_socket

            server.run(sockets=[inherited_socket(fd)])
        else:
            server.run()

def _smoke(the_plan: Any, requests: list[Any], api_key: Optional[str]) -> None:
    from ..gateway.admin import audit_url, verify_audit
    from ..gateway.smoke import run_smoke

    results = run_smoke(the_plan, requests, api_key)
    t = Table("route", "call", "status", "answered by", "escalated", "cache", "ms", "answer", show_lines=False)
    for r in results:
        answer = " ".join(r.answer.split())
        t.add_row(r.route, f"{r.endpoint}{' (stream)' if r.stream else ''}", str(r.status), r.upstream,
                  r.escalated or "-", r.cache, f"{r.ms:,.0f}", term(answer[:70] + ("…" if len(answer) > 70 else "")))
    console.print(keep_ids_whole(t))
    where, v = verify_audit(audit_url(the_plan, None), head=the_plan.audit_head(), key_env=the_plan.audit.hmac_key_env)
    console.print(f"audit: {v.records} records in {where}, chain {'intact' if v.ok else 'BROKEN'} · head {v.head[:16]}…",
                  highlight=False)
    if any(r.status >= 500 for r in results) or not v.ok:
        raise typer.Exit(1)

keys_app = typer.Typer(no_args_is_help=True, help="The gateway's API keys (stored hashed), limits and budgets.")

app.add_typer(keys_app, name="keys")

_PLAN_OPT = typer.Option(..., "--plan", help="Routing plan YAML (its 'state:' file holds the keys).")

@keys_app.command("create")
def keys_create(name: str = typer.Argument(..., help="Who the key is for (shown in lists and audit)."),
                plan: Path = _PLAN_OPT,
                rpm: Optional[int] = typer.Option(None, "--rpm", min=1, help="Requests per minute."),
                max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Token budget per period."),
                max_usd: Optional[float] = typer.Option(None, "--max-usd", min=0, help="Dollar budget per period."),
                period: str = typer.Option("total", "--period", help="Budget period: total, day or month (UTC)."),
                route: Optional[list[str]] = typer.Option(None, "--route", help="Routes the key may use (default: all).")
                ) -> None:
    """Create an API key; it is printed once and only its sha256 is stored."""
    from ..gateway.admin import create_key

    the_plan = _plan(plan)
    if period not in ("total", "day", "month"):
        raise _fail(WeighbridgeError(f"--period {period!r}: use total, day or month"))
    unknown = [r for r in route or [] if r not in the_plan.routes]
    if unknown:
        raise _fail(WeighbridgeError(f"--route {', '.join(unknown)}: not in the plan (routes: {', '.join(the_plan.routes)})"))
    try:
        token, row = create_key(the_plan, name, rpm=rpm, max_tokens=max_tokens, max_usd=max_usd, period=period,
                                routes=route or None)
    except WeighbridgeError as e:
        raise _fail(e) from None
    console.print(f"created {row.id} for {name}; the key (shown once, store it now):", highlight=False)
    print(token)

@keys_app.command("list")
def keys_list(plan: Path = _PLAN_OPT) -> None:
    """Keys with their limits and what they have spent this period."""
    from ..gateway.admin import list_keys

    try:
        rows = list_keys(_plan(plan))
    except WeighbridgeError as e:
        raise _fail(e) from None
    t = Table("id", "name", "status", "rpm", "budget", "period", "spent", "requests", "routes")
    for k, (tokens, usd, n) in rows:
        budget = " · ".join(x for x in (f"{k.max_tokens:,} tok" if k.max_tokens else "",
                                        f"${k.max_usd:g}" if k.max_usd is not None else "") if x) or "-"
        t.add_row(k.id, term(k.name), "revoked" if k.revoked else "active", str(k.rpm or "-"), budget, k.period,
                  f"{tokens:,} tok · ${usd:.4f}", str(n), ", ".join(k.routes) if k.routes else "all")
    console.print(keep_ids_whole(t) if rows else "no keys yet: the gateway serves loopback without keys")

@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (key_…), from 'keys list'."),
                plan: Path = _PLAN_OPT) -> None:
    """Revoke a key; a running gateway stops accepting it within two seconds."""
    from ..gateway.admin import revoke

    try:
        done = revoke(_plan(plan), key_id)
    except WeighbridgeError as e:
        raise _fail(e) from None
    if not done:
        raise _fail(WeighbridgeError(f"no active key {key_id}"), code=1)
    console.print(f"revoked {key_id}")

audit_app = typer.Typer(no_args_is_help=True, help="The gateway's hash-chained audit log.")

app.add_typer(audit_app, name="audit")

@audit_app.command("verify")
def audit_verify(plan: Optional[Path] = typer.Option(None, "--plan", help="Plan whose audit log to check."),
                 url: Optional[str] = typer.Option(None, "--url", help="Audit log: a SQLite path or postgresql://…"),
                 head: Optional[str] = typer.Option(None, "--head", help="Where its head is anchored (default: the "
                                                                         "plan's audit.head, or beside the log)."),
                 key_env: Optional[str] = typer.Option(None, "--key-env", help="Env var with the signing key "
                                                                               "(default: the plan's audit.hmac_key_env, "
                                                                               "else WEIGHBRIDGE_AUDIT_KEY)."),
                 expect_head: Optional[str] = typer.Option(None, "--expect-head",
                                                           help="Head hash kept from an earlier verify.")) -> None:
    """Re-hash the whole chain and hold it against its anchored head: exit 1 naming each deleted,
    edited, reordered or re-hashed record, and a log cut short."""
    from ..gateway.admin import audit_url, reconcile, verify_audit
    from ..gateway.audit import DEFAULT_KEY_ENV

    if plan is None and url is None:
        raise _fail(WeighbridgeError("give --plan or --url"))
    the_plan = _plan(plan) if plan is not None else None
    where = audit_url(the_plan, url) if the_plan is not None else str(url)
    if head is None and the_plan is not None and url is None:
        head = the_plan.audit_head()
    env = key_env or (the_plan.audit.hmac_key_env if the_plan is not None else DEFAULT_KEY_ENV)
    if "://" not in where and not Path(where).exists():
        raise _fail(WeighbridgeError(f"{where}: no audit log here"))
    try:
        shown, v = verify_audit(where, expect_head, head, env)
        compared = None
        if the_plan is not None and url is None:  # the plan names the spend table the log must agree with
            problems, warnings, compared = reconcile(the_plan, where)
            v.problems += problems
            v.warnings += warnings
            v.ok = v.ok and not problems
    except WeighbridgeError as e:
        raise _fail(e) from None
    except Exception as e:  # noqa: BLE001 - a database that cannot be opened is the user's to fix
        raise _fail(WeighbridgeError(f"{where}: {e}")) from None
    for w in v.warnings:
        err_console.print(f"[yellow]![/] {term(w)}", highlight=False)
    signed = "signed (HMAC-SHA256)" if v.signed else f"unsigned (set {env} to sign)"
    if v.ok:
        spend = f", spend agrees for {compared} key(s)" if compared else ""
        console.print(f"[green]ok[/]: {v.records:,} records in {term(shown)}, chain intact{spend}, {signed}, head "
                      f"anchored in {term(str(v.anchored))} · head {v.head}", highlight=False)
        return
    for p in v.problems[:50]:
        err_console.print(f"[red]✗[/] {term(p)}", highlight=False)
    if len(v.problems) > 50:
        err_console.print(f"… and {len(v.problems) - 50} more")
    err_console.print(f"[bold red]broken[/]: {len(v.problems)} problem(s) in {v.records:,} records of {shown}",
                      highlight=False)
    raise typer.Exit(1)

@audit_app.command("show")
def audit_show(plan: Optional[Path] = typer.Option(None, "--plan", help="Plan whose audit log to read."),
               url: Optional[str] = typer.Option(None, "--url", help="Audit log: a SQLite path or postgresql://…"),
               last: int = typer.Option(10, "--last", min=1, help="How many of the newest records."),
               as_json: bool = typer.Option(False, "--json", help="The records as one JSON document (a list)."),
               as_jsonl: bool = typer.Option(False, "--jsonl", help="One JSON record per line.")) -> None:
    """The newest audit records: who called which route, what answered, tokens, cost, safety events."""

    from ..gateway.admin import audit_url, last_records

    if plan is None and url is None:
        raise _fail(WeighbridgeError("give --plan or --url"))
    where = audit_url(_plan(plan), url) if plan is not None else str(url)
    rows = last_records(where, last)
    if as_json and as_jsonl:
        raise _fail(WeighbridgeError("give --json (one document) or --jsonl (one record per line), not both"))
    if as_json:
        print(dumps_json(rows, sort_keys=True))
        return
    if as_jsonl:
        for r in rows:
            print(dumps_json(r, indent=None, sort_keys=True))
        return
    t = Table("seq", "time (UTC)", "key", "route", "status", "answered by", "esc", "cache", "tokens", "cost $",
              "ms", "safety")
    for r in rows:  # a record's route and codes may come from a client: shown, never interpreted
        t.add_row(str(r["seq"]), time.strftime("%H:%M:%S", time.gmtime(r["ts"])), term(r.get("key") or "-"),
                  term(r["route"]), str(r["status"]), term(r.get("upstream") or "-"), "yes" if r.get("escalated") else "",
                  "hit" if r.get("cache_hit") else "", f"{r['prompt_tokens']}+{r['completion_tokens']}",
                  f"{r['cost_usd']:.6f}", f"{r['latency_ms']:.0f}",
                  term(", ".join(f"{k}×{n}" for k, n in sorted(r.get("safety", {}).items()))))
    console.print(keep_ids_whole(t))
