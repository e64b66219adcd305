"""Variants of one model: the config expands them, the verdict follows stated rules, and a real
quantisation of the bundled SmolLM2 is baked off against its reference with paired statistics,
memory measured while each ran."""

from __future__ import annotations

import json
import mmap

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli
from weighbridge.analysis.compare import Comparison
from weighbridge.core.config import load_config
from weighbridge.core.errors import ConfigError
from weighbridge.backends.memprobe import mapped_rss
from weighbridge.analysis.variants import verdict

from .conftest import write

runner = CliRunner()

VARIANTS = """\
models:
  - name: smol
    backend: llamacpp
    params: {max_tokens: 32}
    variants:
      - {name: Q4_1, bundled: smollm2-135m}
      - {name: Q2_K, path: v/q2.gguf, n_ctx: 2048}
      - {name: Q3_K_M, path: v/q3.gguf, reference: true}
  - {name: other, backend: llamacpp, bundled: gemma3-270m, mode: completion}
"""


def test_variants_expand_into_named_models_with_the_entry_settings_and_their_own(tmp_path):
    cfg = load_config(write(tmp_path / "w.yaml", VARIANTS))
    names = [m.name for m in cfg.models]
    assert names == ["smol@Q4_1", "smol@Q2_K", "smol@Q3_K_M", "other"]
    q4, q2, q3, _ = cfg.models
    assert (q4.bundled, q4.path) == ("smollm2-135m", None)
    assert (q2.bundled, q2.path, q2.n_ctx, q2.params.max_tokens) == (None, "v/q2.gguf", 2048, 32)  # path replaces bundled
    assert [m.reference for m in cfg.models[:3]] == [False, False, True] and q3.variant_of == "smol"
    first = load_config(write(tmp_path / "f.yaml", VARIANTS.replace(", reference: true", "")))
    assert first.models[0].reference  # no reference named: the first one is


@pytest.mark.parametrize("body,message", [
    (VARIANTS.replace("path: v/q2.gguf", "path: v/q2.gguf, reference: true"), "all marked reference"),
    (VARIANTS.replace("name: Q2_K", "name: Q4_1"), "two variants are named 'Q4_1'"),
    (VARIANTS.replace("{name: Q2_K, path: v/q2.gguf", "{name: Q2_K, base_url: http://x/v1"),
     "variant 'Q2_K': a llamacpp model needs exactly one of 'bundled'"),
    (VARIANTS.replace("n_ctx: 2048", "n_ctx: 2"), "w.yaml:7: field 'models.0.variants.1.n_ctx'"),
    (VARIANTS.replace("name: other", "name: smol@Q2_K"), "two models are named 'smol@Q2_K'"),
])
def test_bad_variants_name_the_file_line_and_the_variant(tmp_path, body, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path / "w.yaml", body))
    assert message in str(e.value) and "w.yaml:" in str(e.value)


def _cmp(delta: float, lo: float, p: float) -> Comparison:
    return Comparison(model="m", baseline_label="ref", pairs=100, baseline_pass_rate=0.5, candidate_pass_rate=0.5 + delta,
                      delta=delta, delta_ci95=(lo, delta + 0.05), fixed=[], broken=[], p_value=p)


def test_the_verdict_rules_follow_check_and_a_non_inferiority_interval():
    assert verdict(_cmp(-0.12, -0.20, 0.01), 0.05, 0.05) == "worse"  # significant and past the margin: check's rule
    assert verdict(_cmp(-0.03, -0.04, 0.30), 0.05, 0.05) == "within margin"  # the whole interval above −5 points
    assert verdict(_cmp(-0.03, -0.09, 0.30), 0.05, 0.05) == "not shown"  # not worse, but a loss > 5 not ruled out
    assert verdict(_cmp(-0.04, -0.07, 0.01), 0.05, 0.05) == "not shown"  # significant, but within the margin


def test_resident_pages_of_a_mapped_file_are_counted(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\1" * (8 << 20))
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert mapped_rss([f]) == 0 or mapped_rss([f]) < (8 << 20)
        total = sum(m[i] for i in range(0, len(m), 4096))  # touch every page
        assert total == (8 << 20) // 4096
        assert mapped_rss([f]) >= 8 << 20
    assert mapped_rss([f]) == 0  # unmapped: nothing of it is resident in this process


@pytest.mark.slow
def test_quantised_smollm2_variants_are_baked_off_against_the_reference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "weighbridge.yaml", "# my models\nmodels:\n"
          "  - name: smollm2          # the small one\n"
          "    backend: llamacpp\n    bundled: smollm2-135m\n    n_ctx: 1024\n"
          "    params: {max_tokens: 24}\n"
          "suites:\n  - builtin:starter[:6]\n")
    r = runner.invoke(cli, ["quantize", "smollm2", "--to", "Q3_K_M,Q2_K", "--allow-requantize", "--out", "variants",
                            "--threads", "2"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "weighbridge.yaml").read_text()
    assert "# my models" in text and "# the small one" in text  # the user's comments survive
    assert "  - name: smollm2" in text and "      - {name: Q4_1, reference: true, bundled: smollm2-135m}" in text
    assert "      - {name: Q2_K, path: variants/SmolLM2-135M-Instruct.Q2_K.gguf}" in text
    cfg = load_config(tmp_path / "weighbridge.yaml")
    assert [m.name for m in cfg.models] == ["smollm2@Q4_1", "smollm2@Q3_K_M", "smollm2@Q2_K"]

    r = runner.invoke(cli, ["bakeoff", "--json", "out.json"])
    assert r.exit_code == 0, r.output
    assert "variants of smollm2 (reference Q4_1, margin 5 pts, α 0.05)" in r.output
    assert "smallest variant not significantly worse than Q4_1 by more than 5 points:" in r.output
    data = json.loads((tmp_path / "out.json").read_text())
    group = data["variants"][0]
    assert group["name"] == "smollm2" and group["reference"] == "Q4_1"
    rows = {v["variant"]: v for v in group["variants"]}
    assert rows["Q4_1"]["comparison"] is None and rows["Q4_1"]["verdict"] == "reference"
    for name in ("Q3_K_M", "Q2_K"):
        c = rows[name]["comparison"]
        assert c["pairs"] == 6 and c["baseline_label"] == "smollm2@Q4_1"
        broken, fixed = len(c["broken"]), len(c["fixed"])
        from weighbridge.analysis.stats import mcnemar_score_p, tango_interval
        assert c["p_value"] == mcnemar_score_p(broken, fixed)  # the p shown is the test of these flips
        assert c["delta_ci95"] == list(tango_interval(broken, fixed, 6))  # and the interval inverts the same test
        assert rows[name]["verdict"] in ("within margin", "not shown", "worse")
    assert rows["Q2_K"]["file_bytes"] < rows["Q3_K_M"]["file_bytes"] < rows["Q4_1"]["file_bytes"]
    for v in rows.values():  # measured while it ran: more than nothing, more than its weights alone
        assert v["resident_bytes"] and v["resident_bytes"] > v["file_bytes"] * 0.5
        assert v["output_tok_s"] and v["output_tok_s"] > 0
    keep = [v for v in rows.values() if v["verdict"] != "worse"]
    assert group["pick"] == min(keep, key=lambda v: v["file_bytes"])["variant"]
    html = (tmp_path / "weighbridge-report.html").read_text()
    assert "Variants of smollm2" in html and "data-verdict='reference'" in html


def _lora_adapter(path, layers: int = 3, rank: int = 8):
    """A small LoRA adapter for SmolLM2 (llama architecture, 576-wide attention) written with
    llama.cpp's own GGUF library: random low-rank updates to the first layers' query projections,
    large enough to change what the model says."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(rank))
    rng = np.random.default_rng(0)
    for layer in range(layers):
        w.add_tensor(f"blk.{layer}.attn_q.weight.lora_a", (rng.standard_normal((rank, 576)) * 0.5).astype(np.float32))
        w.add_tensor(f"blk.{layer}.attn_q.weight.lora_b", (rng.standard_normal((576, rank)) * 0.5).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_lora_variant_runs_with_its_adapter_and_is_told_apart(tmp_path, monkeypatch, smollm_path):
    monkeypatch.chdir(tmp_path)
    _lora_adapter(tmp_path / "adapter.gguf")
    write(tmp_path / "weighbridge.yaml", "models:\n  - name: smol\n    backend: llamacpp\n    bundled: smollm2-135m\n"
          "    n_threads: 2\n    params: {max_tokens: 12}\n    variants:\n      - {name: base}\n"
          "      - {name: tuned, lora_path: adapter.gguf}\n"
          "suites: ['builtin:starter[:2]']\n")
    r = runner.invoke(cli, ["bakeoff", "--json", "out.json"])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "out.json").read_text())
    from weighbridge.storage.store import Store

    st = Store(tmp_path / "weighbridge.db")
    texts = {(g.model, g.case_id): g.generation.text for g in st.generations(st.latest_run())}
    assert any(texts[("smol@base", c)] != texts[("smol@tuned", c)] for c in {c for _, c in texts})
    lora = data["manifest"]["models"]["smol@tuned"]["lora"]
    assert lora["sha256"] and lora["size_bytes"] == (tmp_path / "adapter.gguf").stat().st_size
    assert "lora" not in data["manifest"]["models"]["smol@base"]
    rows = {v["variant"]: v for v in data["variants"][0]["variants"]}
    assert rows["tuned"]["file_bytes"] == rows["base"]["file_bytes"] + lora["size_bytes"]
    # a model file given as an adapter is refused before anything runs
    write(tmp_path / "bad.yaml", (tmp_path / "weighbridge.yaml").read_text().replace("adapter.gguf", str(smollm_path)))
    r = runner.invoke(cli, ["bakeoff", "-c", "bad.yaml"])
    assert r.exit_code != 0 and "is not a LoRA adapter (general.type 'model')" in " ".join(r.output.split())


def test_served_variants_of_one_model_replace_only_what_they_name(tmp_path):
    cfg = load_config(write(tmp_path / "w.yaml", "models:\n  - name: qwen7b\n    backend: openai\n"
                            "    base_url: http://127.0.0.1:8000/v1\n    api_key_env: VLLM_KEY\n    model: Qwen/Qwen2.5-7B-Instruct\n"
                            "    variants:\n      - {name: bf16}\n"
                            "      - {name: awq, model: Qwen/Qwen2.5-7B-Instruct-AWQ}\n"
                            "      - {name: fp8, base_url: http://127.0.0.1:8001/v1}\n"
                            "      - {name: gguf, backend: llamacpp, bundled: qwen2.5-coder-0.5b}\n"))
    bf16, awq, fp8, gguf = cfg.models
    assert (awq.base_url, awq.model, awq.api_key_env) == ("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct-AWQ", "VLLM_KEY")
    assert (fp8.base_url, fp8.model) == ("http://127.0.0.1:8001/v1", "Qwen/Qwen2.5-7B-Instruct")
    assert (gguf.backend, gguf.base_url, gguf.model, gguf.api_key_env) == ("llamacpp", None, None, None)
    assert bf16.reference and not gguf.reference
