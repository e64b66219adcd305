import json

import pytest
from typer.testing import CliRunner

from weighbridge.catalog.bom import build_bom, validate_bom
from weighbridge.cli import app
from weighbridge.core.config import load_config
from weighbridge.core.errors import WeighbridgeError
from weighbridge.catalog.lock import write_lock

from .conftest import write

runner = CliRunner()

CONFIG = """
models:
  - {name: smol, backend: llamacpp, bundled: smollm2-135m, catalog_id: smollm2-135m-instruct}
  - {name: gemma, backend: llamacpp, bundled: gemma3-270m, mode: completion}
  - {name: qwen-served, backend: openai, base_url: 'http://127.0.0.1:8000/v1', model: Qwen/Qwen2.5-7B-Instruct,
     catalog_id: qwen2.5-7b-instruct}
"""


def test_bom_validates_and_carries_hashes_and_licenses(tmp_path, smollm_path):
    cfg = load_config(write(tmp_path / "weighbridge.yaml", CONFIG))
    bom = build_bom(cfg)
    validate_bom(bom)
    comps = {c["name"]: c for c in bom["components"]}
    assert bom["specVersion"] == "1.6" and all(c["type"] == "machine-learning-model" for c in comps.values())
    assert comps["smol"]["licenses"] == [{"license": {"id": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"}}]
    assert comps["gemma"]["licenses"][0]["license"]["name"] == "Gemma Terms of Use"
    assert comps["qwen-served"]["licenses"][0]["license"]["id"] == "Apache-2.0"  # from the catalog entry
    assert "hashes" not in comps["qwen-served"]
    from weighbridge.core.hashing import sha256_file
    assert comps["smol"]["hashes"] == [{"alg": "SHA-256", "content": sha256_file(smollm_path)}]
    assert {"name": "weighbridge:hashes-from", "value": "files now"} in comps["smol"]["properties"]
    assert bom["dependencies"][0]["dependsOn"] == ["model:smol", "model:gemma", "model:qwen-served"]


def test_bom_prefers_the_lockfile(tmp_path):
    cfg = load_config(write(tmp_path / "weighbridge.yaml", CONFIG))
    write_lock(cfg)
    comps = {c["name"]: c for c in build_bom(cfg)["components"]}
    assert {"name": "weighbridge:hashes-from", "value": "weighbridge.lock"} in comps["smol"]["properties"]


def test_validator_rejects_a_broken_document(tmp_path):
    cfg = load_config(write(tmp_path / "weighbridge.yaml", CONFIG))
    bom = build_bom(cfg)
    bom["components"][0]["type"] = "banana"
    with pytest.raises(WeighbridgeError, match="does not validate"):
        validate_bom(bom)


def test_cli_bom(tmp_path):
    cfg = write(tmp_path / "weighbridge.yaml", CONFIG)
    out = tmp_path / "bom.json"
    r = runner.invoke(app, ["bom", "-c", str(cfg), "-o", str(out)])
    assert r.exit_code == 0 and "schema-valid" in r.output
    assert json.loads(out.read_text())["bomFormat"] == "CycloneDX"
