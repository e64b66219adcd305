"""`models` and `license`: the catalog and the license verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..report.jsonreport import dumps as dumps_json
from ..core.config import load_config
from ..core.errors import WeighbridgeError

from ..report.tables import keep_ids_whole
from .common import _config, _fail, app, console


models_app = typer.Typer(help="The sourced catalog of open-weight models.", invoke_without_command=True)

app.add_typer(models_app, name="models")

@models_app.callback()
def models_list(
    ctx: typer.Context,
    family: Optional[str] = typer.Option(None, "--family", help="deepseek, qwen, glm, kimi, minimax, yi, llama, ..."),
    profile: Optional[Path] = typer.Option(None, "-p", "--profile", help="Deployment profile for the verdict column."),
    verdict: Optional[str] = typer.Option(None, "--verdict", help="Keep models with this verdict "
                                                                 "(allowed, allowed_with_duties, needs_review, not_allowed)."),
    open_: Optional[str] = typer.Option(None, "--open", help="Keep models that publish this: weights, code, training, data."),
    min_params: Optional[float] = typer.Option(None, "--min-params", help="Total parameters, billions."),
    max_params: Optional[float] = typer.Option(None, "--max-params", help="Total parameters, billions."),
    min_context: Optional[str] = typer.Option(None, "--min-context", help="e.g. 32k"),
    fits: Optional[str] = typer.Option(None, "--fits", help="Keep models whose estimate fits this memory, e.g. 24GiB."),
    quant: str = typer.Option("q4_k_m", "--quant", help="Quantization for --fits (q4_k_m, q8_0, f16, ...)."),
    context: str = typer.Option("8k", "--context", help="Context for --fits, e.g. 32k."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the listed entries as JSON."),
) -> None:
    """List and filter the catalog; with --fits, estimate memory (the formula is printed)."""
    if ctx.invoked_subcommand is not None:
        return

    from ..catalog import Profile, load_profile
    from ..catalog.catalog import entry_dict, load_catalog
    from ..catalog.licenses import load_licenses, verdict_for
    from ..catalog.memory import FORMULA, estimate, parse_context, parse_size
    from ..core.files import write_atomic

    try:
        cat, book = load_catalog(), load_licenses()
        prof = load_profile(profile) if profile else Profile()
        budget = parse_size(fits) if fits else None
        ctx_tokens = parse_context(context)
        min_ctx = parse_context(min_context) if min_context else None
        rows = []
        for m in cat.models:
            if family and m.family != family.lower():
                continue
            pub = {"weights": m.published.weights, "code": m.published.inference_code,
                   "training": m.published.training_code, "data": m.published.data}
            if open_ and not pub.get(open_.lower(), False):
                continue
            if (min_params and m.params_total_b < min_params) or (max_params and m.params_total_b > max_params):
                continue
            if min_ctx and m.context_length < min_ctx:
                continue
            lic = book.get(m.license)
            v = verdict_for(lic, prof, f"license '{m.license}' is not yet structured in the catalog")
            if verdict and v.verdict != verdict:
                continue
            est = estimate(m, quant, ctx_tokens)
            if budget is not None and (est.total_gib is None or est.total_gib * 1024**3 > budget):
                continue
            rows.append((m, v, est))
    except WeighbridgeError as e:
        raise _fail(e) from None
    t = Table("id", "params (B)", "arch", "context", "license", "verdict",
              f"GiB @{quant},{context}", title=f"catalog as of {cat.as_of} · {len(rows)} of {len(cat.models)} models",
              title_justify="left")
    for m, v, est in rows:
        params = f"{m.params_total_b:g}" + (f"/{m.params_active_b:g}" if m.params_active_b else "")
        t.add_row(m.id, params, m.architecture, f"{m.context_length // 1024}k", m.license,
                  f"[{_VERDICT_STYLE[v.verdict]}]{v.verdict.replace('_', ' ')}[/]",
                  f"{est.total_gib:,.1f}" if est.total_gib is not None else f"{est.weights_gib:,.1f}+KV?")
    console.print(keep_ids_whole(t))
    if fits or budget is not None:
        console.print(f"[dim]{FORMULA}[/]", highlight=False)
    if json_out:
        write_atomic(json_out, dumps_json([{**entry_dict(m), "verdict": v.verdict, "estimate_gib": est.total_gib}
                                            for m, v, est in rows]) + "\n")

@models_app.command("show")
def models_show(model_id: str = typer.Argument(..., help="Catalog id, Hugging Face repo id or name.")) -> None:
    """Every fact of one catalog entry, with its sources and what is not yet verified."""
    from ..catalog.catalog import load_catalog

    m = load_catalog().get(model_id)
    if m is None:
        raise _fail(WeighbridgeError(f"no catalog entry '{model_id}' (see `weighbridge models`)"))
    for key, value in m.model_dump(exclude_none=True).items():
        if key in ("sources", "unverified"):
            continue
        flag = " [magenta](unverified)[/]" if key in m.unverified else ""
        console.print(f"[bold]{key}[/]: {escape(str(value))}{flag}", highlight=False)
    for key, url in m.sources.items():
        console.print(f"[dim]source ({key}): {escape(url)}[/]", highlight=False)

license_app = typer.Typer(no_args_is_help=True, help="License terms and verdicts for a deployment profile.")

app.add_typer(license_app, name="license")

_VERDICT_STYLE = {"allowed": "green", "allowed_with_duties": "yellow", "needs_review": "magenta",
                  "not_allowed": "bold red"}

def _quote_kind(kind: str) -> str:
    """Say when a quote was not read in the license file itself."""
    return {"verbatim": "", "transcribed": " (as transcribed by others; vendor file not read)",
            "paraphrase": " (paraphrase, not the license's words)"}[kind]

@license_app.command("check")
def license_check(
    targets: Optional[list[str]] = typer.Argument(None, help="Config model names, bundled aliases, GGUF files or "
                                                             "model folders (default: every model in the config)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config whose models to check."),
    profile: Optional[Path] = typer.Option(None, "-p", "--profile", help="Deployment profile YAML (default: internal "
                                                                         "commercial use, user numbers unknown)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the verdicts as JSON here."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on 'needs review' too, not only on 'not allowed'."),
) -> None:
    """Say whether each model's license allows the deployment, with the clause behind each duty."""

    from ..catalog import Profile, load_profile
    from ..catalog.check import check
    from ..core.files import write_atomic

    try:
        cfg = _config(config) if (config or not targets) else (load_config("weighbridge.yaml")
                                                               if Path("weighbridge.yaml").exists() else None)
        prof = load_profile(profile) if profile else Profile()
        results = check(targets or [], cfg, prof)
    except WeighbridgeError as e:
        raise _fail(e) from None
    console.print(f"[dim]profile: {profile or 'default'} · " + ", ".join(
        f"{k}={v}" for k, v in prof.model_dump().items() if v not in (None, [], False)) + "[/]")
    t = Table("model", "catalog entry", "license", "from", "verdict", "what it takes", title_justify="left")
    for r in results:
        v = r.verdict
        lic = v.license.name if v.license else (r.identity.license_key or "unknown")
        todo = "; ".join(f.rule.id for f in v.findings if f.outcome != "info") or v.reason
        t.add_row(r.name, r.identity.facts.get("catalog_id", "–"), lic, r.identity.kind,
                  f"[{_VERDICT_STYLE[v.verdict]}]{v.verdict.replace('_', ' ')}[/]", todo)
    console.print(keep_ids_whole(t, id_columns=(0, 1)))
    for r in results:
        shown = [f for f in r.verdict.findings if f.outcome != "info"]
        if not shown and r.verdict.license is not None and not r.identity.review:
            continue
        console.print(f"[bold]{r.name}[/] – {r.verdict.verdict.replace('_', ' ')}: {r.verdict.reason}")
        if r.verdict.license is None:
            console.print(f"  {r.identity.note}")
        if r.identity.review and r.identity.review != r.verdict.reason:
            console.print(escape(f"  ! {r.identity.review}"), highlight=False)
        for f in shown:
            console.print(escape(f"  • [{f.outcome.replace('_', ' ')}] {f.why}\n    § {f.rule.section}: “{f.rule.quote}”"
                                 + _quote_kind(f.rule.quote_kind)), highlight=False)
        if r.verdict.license is not None:
            console.print(f"    source: {r.verdict.license.source}", highlight=False)
    for r in results:
        for caveat in r.verdict.caveats:
            console.print(f"[yellow]{escape(r.name)}: {escape(caveat)}[/]", highlight=False, soft_wrap=True)
    if json_out:
        write_atomic(json_out, dumps_json({"profile": prof.model_dump(), "results": [r.to_dict() for r in results]},
                                           ) + "\n")
        console.print(f"json: {json_out}")
    worst = {r.verdict.verdict for r in results}
    if "not_allowed" in worst or (strict and "needs_review" in worst):
        raise typer.Exit(1)

@license_app.command("list")
def license_list() -> None:
    """The license texts weighbridge knows, with what they allow commercially."""
    from ..catalog import load_licenses

    book = load_licenses()
    t = Table("id", "name", "SPDX / ref", "commercial", "rules", title=f"licenses (as of {book.as_of})",
              title_justify="left")
    for lic in book.licenses:
        t.add_row(lic.id, lic.name, lic.spdx, lic.commercial, str(len(lic.rules)))
    console.print(keep_ids_whole(t))

@license_app.command("show")
def license_show(license_id: str = typer.Argument(..., help="License id or alias (see `weighbridge license list`).")) -> None:
    """Every rule of one license, with the clause it quotes."""
    from ..catalog import load_licenses

    lic = load_licenses().get(license_id)
    if lic is None:
        raise _fail(WeighbridgeError(f"no license '{license_id}' (see `weighbridge license list`)"))
    console.print(f"[bold]{lic.name}[/] ({lic.spdx}) · commercial use: {lic.commercial}\nsource: {lic.source}",
                  highlight=False)
    if lic.text:
        console.print(f"text: shipped with weighbridge, sha256 {lic.text_sha256}")
    elif lic.text_note:
        console.print(f"text: {lic.text_note}", highlight=False)
    if lic.fingerprint:
        console.print(f"text fingerprint: {lic.fingerprint}"
                      + (f"\n  hashed from: {lic.text_hashed_from}" if lic.text_hashed_from else ""), highlight=False)
    else:
        console.print("text fingerprint: none recorded (no copy of the full text was available to hash)")
    for rule in lic.rules:
        when = ", ".join(c if isinstance(c, str) else str(c) for c in rule.when)
        console.print(escape(f"• {rule.id} [{rule.effect}] when {when}: {rule.duty}\n  § {rule.section}: “{rule.quote}”"
                             + _quote_kind(rule.quote_kind)), highlight=False)

@license_app.command("verify-text")
def license_verify_text(
    files: list[Path] = typer.Argument(..., help="License files to compare (LICENSE, LICENSE-MODEL, an HTML terms page)."),
    expect: Optional[str] = typer.Option(None, "--license", "-l", help="Fail unless every file is this license's text."),
) -> None:
    """Say which catalog license a license file is, word for word, so its structured terms can be trusted.

    Layout, markup, quote style, case and copyright lines are ignored (the same agreement ships as
    markdown on GitHub and plain text on the Hub); any changed word is a different text.
    """
    from ..catalog import load_licenses

    book = load_licenses()
    want = book.get(expect) if expect else None
    if expect and want is None:
        raise _fail(WeighbridgeError(f"no license '{expect}' (see `weighbridge license list`)"))
    if want is not None and not want.fingerprint:
        raise _fail(WeighbridgeError(f"the catalog records no text fingerprint for '{want.id}', so a copy cannot be "
                                     f"compared; read it at {want.source}"))
    failed = False
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise _fail(WeighbridgeError(f"cannot read {f}: {e.strerror}")) from None
        html = f.suffix.lower() in (".html", ".htm")
        lic = book.match_text(text, html=html)
        if lic is not None and (want is None or lic is want):
            console.print(f"[green]match[/] {f}: the text of {lic.id} ({lic.name}), fingerprint {lic.fingerprint}",
                          highlight=False)
            continue
        failed = True
        if lic is not None:
            console.print(f"[bold red]differs[/] {f}: this is the text of {lic.id}, not {want.id}", highlight=False)  # type: ignore[union-attr]
        elif want is not None:
            console.print(f"[bold red]differs[/] {f}: not word for word the {want.id} text the catalog structured "
                          f"(fingerprint {want.fingerprint_of(text, html=html)}, expected {want.fingerprint}); "
                          "its terms may differ from those `license check` applies", highlight=False)
        else:
            console.print(f"[bold red]unknown[/] {f}: not word for word any license text the catalog records; "
                          "a model under it gets 'needs review'", highlight=False)
    if failed:
        raise typer.Exit(1)
