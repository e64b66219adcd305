"""`weighbridge rescore --suite FILE` / `--scorer SPEC`: stored answers scored with the current
suite file's scorers as a new scored version of the run, the old scores kept."""

from __future__ import annotations

from typer.testing import CliRunner

from weighbridge.cli import app as cli
from weighbridge.storage.store import Store

from .conftest import write

runner = CliRunner()

CASES = """\
cases:
  - id: capital
    prompt: "What is the capital of France? Answer with one word."
    scorers: [{type: contains, value: Paris}]
  - id: sum
    prompt: "What is 2 + 2? Answer with a number."
    scorers: [numeric]
    expected: 4
"""


def test_rescore_with_a_changed_suite_file_changes_a_verdict_and_keeps_the_old_scores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "cases.yaml", CASES)
    write(tmp_path / "weighbridge.yaml", "models:\n  - {name: smol, backend: llamacpp, bundled: smollm2-135m, "
          "n_threads: 2, params: {max_tokens: 16}}\nsuites: [cases.yaml]\n")
    assert runner.invoke(cli, ["bakeoff"]).exit_code == 0
    st = Store(tmp_path / "weighbridge.db")
    run = st.latest_run()
    before = {g.case_id: (g.passed, g.generation.text) for g in st.generations(run)}
    # the rubric changes: "capital" now wants the opposite of what the model said
    flipped = "Paris" if not before["capital"][0] else "Zzyzx"
    write(tmp_path / "cases-v2.yaml", CASES.replace("value: Paris", f"value: {flipped}")
          + "  - id: extra\n    prompt: new\n    scorers: [exact]\n    expected: x\n")
    r = runner.invoke(cli, ["rescore", "--suite", "cases-v2.yaml"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "as scored version 2; version 1 is kept" in out and "1 changed pass/fail" in out
    assert "changed: smol: capital#0" in out and "in cases-v2.yaml but not in the run (no answer to score): extra" in out
    after = {g.case_id: (g.passed, g.generation.text) for g in st.generations(run)}
    assert after["capital"][0] != before["capital"][0] and after["sum"] == before["sum"]
    assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in before.items()}  # answers untouched
    old = st.score_history(run, 1)
    assert [sc.passed for scores in old.values() for _, sc in scores] == [before["capital"][0], before["sum"][0]]
    versions = st.score_versions(run)
    assert [v["version"] for v in versions] == [1, 2] and versions[1]["source"] == "suite cases-v2.yaml"
    assert st.run(run)["score_version"] == 2

    # a plain rescore goes on from the latest version's cases, not back to the stored ones
    r = runner.invoke(cli, ["rescore"])
    assert r.exit_code == 0 and "as scored version 3" in r.output and "0 changed pass/fail" in r.output
    # --scorer replaces every case's scorers; a bad one is a clear error and writes nothing
    r = runner.invoke(cli, ["rescore", "--scorer", "{type: regex, pattern: '.'}"])
    assert r.exit_code == 0 and "as scored version 4" in r.output
    assert all(g.passed for g in st.generations(run))
    r = runner.invoke(cli, ["rescore", "--scorer", "{type: nope}"])
    assert r.exit_code == 2 and "unknown scorer type 'nope'" in r.output
    r = runner.invoke(cli, ["rescore", "--scorer", "{type: regex, pattern: a, pattern: b}"])
    assert r.exit_code == 2 and "duplicate" in r.output.lower()
    assert st.run(run)["score_version"] == 4
    write(tmp_path / "other.yaml", "cases:\n  - {id: zzz, prompt: q, scorers: [exact], expected: x}\n")
    r = runner.invoke(cli, ["rescore", "--suite", "other.yaml"])
    assert r.exit_code == 2 and "none of its 1 case ids is in run" in r.output
