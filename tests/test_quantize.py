"""``weighbridge quantize`` on the bundled SmolLM2 with llama.cpp's own quantiser: variants written
whole with their provenance, a re-quantisation refused unless asked for, and the lock recording
where each variant came from (and not trusting a record whose file changed)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from weighbridge.backends.bundled import resolve_bundled
from weighbridge.cli import app as cli
from weighbridge.core.hashing import sha256_file

from .conftest import write

runner = CliRunner()


def test_requantising_a_quantised_file_is_refused_unless_asked_and_unknown_types_are_named(tmp_path):
    r = runner.invoke(cli, ["quantize", "smollm2-135m", "--to", "Q2_K", "--out", str(tmp_path / "m")])
    assert r.exit_code != 0 and "already quantised" in r.output and "--allow-requantize" in r.output
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())
    r = runner.invoke(cli, ["quantize", "smollm2-135m", "--to", "Q9_Z", "--out", str(tmp_path / "m")])
    assert r.exit_code != 0 and "unknown quantisation type(s) Q9_Z" in r.output and "Q4_K_M" in r.output


def test_variants_are_written_with_provenance_and_locked_with_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no weighbridge.yaml here: the variants' entry is printed, not added
    src = resolve_bundled("smollm2-135m", "smol")
    r = runner.invoke(cli, ["quantize", "smollm2-135m", "--to", "Q3_K_M,Q2_K", "--allow-requantize", "--threads", "2",
                            "--out", str(tmp_path / "models")])
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert files == ["SmolLM2-135M-Instruct.Q2_K.gguf", "SmolLM2-135M-Instruct.Q2_K.gguf.quant.json",
                     "SmolLM2-135M-Instruct.Q3_K_M.gguf", "SmolLM2-135M-Instruct.Q3_K_M.gguf.quant.json"]  # no partials
    side = json.loads((tmp_path / "models" / "SmolLM2-135M-Instruct.Q2_K.gguf.quant.json").read_text())
    assert side["source_sha256"] == sha256_file(src) and side["type"] == "Q2_K" and side["allow_requantize"]
    assert side["sha256"] == sha256_file(tmp_path / "models" / "SmolLM2-135M-Instruct.Q2_K.gguf")
    assert side["fallback_tensors"] > 0 and side["total_tensors"] == 272  # 576-wide rows: K-quants fall back
    assert "      - {name: Q4_1, reference: true, bundled: smollm2-135m}" in r.output
    assert "      - {name: Q2_K, path: models/SmolLM2-135M-Instruct.Q2_K.gguf}" in r.output
    cfg = write(tmp_path / "weighbridge.yaml", "models:\n"
                "  - {name: q2, backend: llamacpp, path: models/SmolLM2-135M-Instruct.Q2_K.gguf}\n"
                "  - {name: q3, backend: llamacpp, path: models/SmolLM2-135M-Instruct.Q3_K_M.gguf}\n")
    assert runner.invoke(cli, ["lock", "-c", str(cfg)]).exit_code == 0
    lock = json.loads((tmp_path / "weighbridge.lock").read_text())
    made = lock["models"]["q2"]["quantized_from"]
    assert made["source_sha256"] == sha256_file(src) and made["type"] == "Q2_K"
    # a variant whose bytes changed after it was written is not vouched for by its old record
    with open(tmp_path / "models" / "SmolLM2-135M-Instruct.Q3_K_M.gguf", "ab") as f:
        f.write(b"\0")
    assert runner.invoke(cli, ["lock", "-c", str(cfg)]).exit_code == 0
    lock = json.loads((tmp_path / "weighbridge.lock").read_text())
    assert "quantized_from" not in lock["models"]["q3"] and "quantized_from" in lock["models"]["q2"]
