import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from weighbridge import __version__
from weighbridge.cli import app

from .conftest import free_port, smol_project, write

runner = CliRunner()

CASES = "".join(f"""
- id: q{i}
  prompt: What is {i} + {i}? Reply with the number only.
  expected: {2 * i}
  scorers: [numeric]
""" for i in range(1, 9))


def project(tmp_path, max_tokens=24):
    return smol_project(tmp_path, CASES, max_tokens)


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"weighbridge {__version__}"


def test_init_writes_a_valid_config_and_will_not_overwrite(tmp_path):
    target = tmp_path / "weighbridge.yaml"
    r = runner.invoke(app, ["init", str(target)])
    assert r.exit_code == 0 and target.exists()
    r = runner.invoke(app, ["init", str(target)])
    assert r.exit_code == 2 and "--force" in r.output
    r = runner.invoke(app, ["suites", "builtin:starter"])
    assert r.exit_code == 0 and "48" in r.output


def test_bakeoff_json_report_and_fail_under(tmp_path):
    cfg = project(tmp_path)
    out = tmp_path / "res.json"
    r = runner.invoke(app, ["bakeoff", "-c", str(cfg), "--json", str(out), "--fail-under", "0"])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    m = data["models"][0]
    assert m["model"] == "smol" and m["jobs"] == 8 and len(m["ci95"]) == 2 and "pass_rate" in data["definitions"]
    assert (tmp_path / "weighbridge-report.html").read_text().count("<tr class=case") == 8
    assert "pass rate" in r.output and "$ / successful case" in r.output
    # the same run again comes from cache; a threshold above the pass rate fails
    r = runner.invoke(app, ["bakeoff", "-c", str(cfg), "--fail-under", "1.01" if m["pass_rate"] == 1 else "1"])
    assert r.exit_code == 1 and "fail-under" in r.output and "8 from cache" in r.output


def test_report_and_runs_read_the_store_without_models(tmp_path):
    cfg = project(tmp_path)
    assert runner.invoke(app, ["bakeoff", "-c", str(cfg)]).exit_code == 0
    db = tmp_path / "weighbridge.db"
    r = runner.invoke(app, ["runs", "--store", str(db)])
    assert r.exit_code == 0 and "finished" in r.output and "8/8" in r.output
    html = tmp_path / "again.html"
    r = runner.invoke(app, ["report", "--store", str(db), "-o", str(html)])
    assert r.exit_code == 0 and html.exists() and "pass rate" in r.output


def test_malformed_config_exits_2_naming_file_line_field(tmp_path):
    cfg = write(tmp_path / "weighbridge.yaml", "models:\n  - name: a\n    backend: llamacpp\n    bundled: x\n"
                                               "    params: {max_tokens: -5}\n")
    r = runner.invoke(app, ["bakeoff", "-c", str(cfg)])
    assert r.exit_code == 2
    assert f"{cfg}:5: field 'models.0.params.max_tokens'" in " ".join(r.output.split())
    assert not (tmp_path / "weighbridge.db").exists()


def test_unreachable_endpoint_exits_2_and_writes_no_run(tmp_path):
    write(tmp_path / "cases.yaml", CASES)
    port = free_port()
    cfg = write(tmp_path / "weighbridge.yaml", f"models:\n  - {{name: vllm-qwen, backend: openai, "
                                               f"base_url: 'http://127.0.0.1:{port}/v1', model: q, connect_timeout_s: 2}}\n"
                                               "suites: [cases.yaml]\n")
    r = runner.invoke(app, ["bakeoff", "-c", str(cfg)])
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and "model 'vllm-qwen'" in out and f"127.0.0.1:{port}" in out
    assert not (tmp_path / "weighbridge.db").exists()


def _start(cfg, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "weighbridge", "bakeoff", "-c", str(cfg), "--no-cache", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)


def _wait_for_answers(db, n, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"bakeoff ended early: {proc.stdout.read()}")
        try:
            count = sqlite3.connect(db).execute("SELECT COUNT(*) FROM generations").fetchone()[0]
            if count >= n:
                return count
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    pytest.fail("no answers appeared")


@pytest.mark.slow
def test_resume_after_kill_9_loses_no_finished_answer(tmp_path):
    cfg = project(tmp_path, max_tokens=48)
    db = tmp_path / "weighbridge.db"
    proc = _start(cfg)
    _wait_for_answers(db, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    con = sqlite3.connect(db)
    before = con.execute("SELECT id, case_id, text, created_at FROM generations ORDER BY id").fetchall()
    run_id, status = con.execute("SELECT id, status FROM runs").fetchone()
    assert status == "running" and 3 <= len(before) < 8
    con.close()
    resumed = subprocess.run([sys.executable, "-m", "weighbridge", "bakeoff", "-c", str(cfg), "--no-cache", "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    flat = " ".join(resumed.stdout.split())
    assert f"{len(before)} already done" in flat
    # the progress line counts the resumed run's earlier passes too: it agrees with the table
    line, table = re.search(r"done 8/8 jobs · pass (\d+)", flat), re.search(r"pass rate │ \S+ \((\d+)/8\)", flat)
    assert line and table and line.group(1) == table.group(1), flat
    con = sqlite3.connect(db)
    after = con.execute("SELECT id, case_id, text, created_at FROM generations ORDER BY id").fetchall()
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert con.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()[0] == "finished"
    assert after[:len(before)] == before  # the finished answers were kept, not redone
    assert sorted(r[1] for r in after) == [f"q{i}" for i in range(1, 9)]


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_resumable(tmp_path):
    cfg = project(tmp_path, max_tokens=48)
    db = tmp_path / "weighbridge.db"
    proc = _start(cfg)
    _wait_for_answers(db, 2, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" in out
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    done = con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    con.close()
    r = subprocess.run([sys.executable, "-m", "weighbridge", "bakeoff", "-c", str(cfg), "--resume"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"{done} already done" in " ".join(r.stdout.split())
