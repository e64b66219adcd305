"""The regression gate end to end with the real bundled model: a planted regression fails
`weighbridge check` and is named case by case; the same model passes with no flips."""

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app
from weighbridge.analysis.compare import compare

from .conftest import write

runner = CliRunner()
EASY = Path(__file__).parent / "data" / "easy_cases.yaml"


def config(tmp_path: Path, name: str, max_tokens: int) -> Path:
    shutil.copy(EASY, tmp_path / "cases.yaml")
    return write(tmp_path / f"{name}.yaml", f"models:\n  - {{name: smol, backend: llamacpp, bundled: smollm2-135m, "
                                            f"n_threads: 2, params: {{max_tokens: {max_tokens}}}}}\n"
                                            "suites: [cases.yaml]\nstore: wb.db\n")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("check")
    good = config(tmp, "good", 48)
    r = runner.invoke(app, ["bakeoff", "-c", str(good), "--json", str(tmp / "good.json")])
    assert r.exit_code == 0, r.output
    return tmp, good, json.loads((tmp / "good.json").read_text())


def test_planted_regression_fails_check_and_names_the_cases(baseline):
    tmp, _, good = baseline
    worse = config(tmp, "worse", 1)  # one output token: measurably worse on the cases it passed
    junit, out = tmp / "junit.xml", tmp / "check.json"
    r = runner.invoke(app, ["check", "-c", str(worse), "--baseline", str(tmp / "good.json"),
                            "--junit", str(junit), "--json", str(out)])
    assert r.exit_code == 1, r.output
    comp = json.loads(out.read_text())["comparisons"][0]
    assert len(comp["broken"]) >= 6 and comp["fixed"] == [] and comp["p_value"] < 0.05 and comp["delta"] < 0
    flat = " ".join(r.output.split())
    for case in comp["broken"]:  # each named case passed in the baseline and is printed
        assert good["models"][0]["outcomes"][case] is True and case in flat
    suite = ET.parse(junit).getroot().find("testsuite")
    failures = {tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None}
    assert failures == set(comp["broken"]) | {"regression-gate"}


def test_equal_model_passes_with_no_flips(baseline):
    tmp, good_cfg, _ = baseline
    out = tmp / "equal.json"
    r = runner.invoke(app, ["check", "-c", str(good_cfg), "--baseline", str(tmp / "good.json"), "--json", str(out)])
    assert r.exit_code == 0, r.output
    comp = json.loads(out.read_text())["comparisons"][0]
    assert comp["broken"] == [] and comp["fixed"] == [] and comp["p_value"] == 1.0 and "ok" in r.output


def test_baseline_can_be_a_run_id_in_the_store(baseline):
    tmp, good_cfg, good = baseline
    r = runner.invoke(app, ["check", "-c", str(good_cfg), "--baseline", good["run_id"]])
    assert r.exit_code == 0 and f"run {good['run_id']}" in " ".join(r.output.split())


def test_margin_tolerates_small_drops():
    base = {f"c{i}#0": True for i in range(40)}
    now = dict(base, **{f"c{i}#0": False for i in range(7)})
    c = compare("m", base, now, "b")
    assert c.p_value < 0.05 and c.regression(0.05, 0.10)
    assert not c.regression(0.05, 0.20)  # a 17.5-point drop is inside a 20-point margin


def test_unknown_baseline_model_is_a_clear_error(baseline, tmp_path):
    tmp, good_cfg, _ = baseline
    f = write(tmp_path / "b.json", json.dumps({"models": [{"model": "a", "outcomes": {"x#0": True}},
                                                          {"model": "b", "outcomes": {"x#0": True}}]}))
    r = runner.invoke(app, ["check", "-c", str(good_cfg), "--baseline", str(f)])
    assert r.exit_code == 2 and "--baseline-model" in r.output


def test_partial_credit_is_compared_with_a_paired_bootstrap():
    base = {f"c{i}#0": False for i in range(10)}
    c = compare("m", base, dict(base), "b", {k: 0.2 for k in base}, {k: 0.7 for k in base})
    assert c.score_delta == pytest.approx(0.5) and c.score_delta_ci95 == (pytest.approx(0.5), pytest.approx(0.5))
    assert c.fixed == c.broken == []  # pass/fail unchanged, yet the scores moved: the report shows both


@pytest.mark.slow
@pytest.mark.usefixtures("need_bubblewrap")
def test_check_gates_an_agent_suite_like_any_other(tmp_path):
    """The bundled Qwen on agent cases (episodes against sandboxed environments), checked against its
    own run: every episode runs again, and the comparison is paired per (task, trial)."""
    cfg = write(tmp_path / "agent.yaml", "models:\n  - {name: qwen, backend: llamacpp, bundled: qwen2.5-coder-0.5b, "
                                         "n_ctx: 8192, params: {max_tokens: 128}}\n"
                                         "suites: ['builtin:agent[:3]']\nstore: wb.db\n")
    r = runner.invoke(app, ["bakeoff", "-c", str(cfg), "--json", str(tmp_path / "base.json")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["check", "-c", str(cfg), "--baseline", str(tmp_path / "base.json"),
                            "--json", str(tmp_path / "check.json")])
    assert r.exit_code == 0, r.output
    comp = json.loads((tmp_path / "check.json").read_text())["comparisons"][0]
    assert comp["pairs"] == 3 and comp["broken"] == [] and comp["fixed"] == []  # greedy episodes replay alike
    assert json.loads((tmp_path / "base.json").read_text())["models"][0]["agent"]["episodes"] == 3
