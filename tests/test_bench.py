import re
import asyncio
import json
import time

import pytest
from typer.testing import CliRunner

from weighbridge.bench.loadgen import Target, stream_once, synthetic_prompts, sweep
from weighbridge.bench.metrics import SLO, RequestRecord, parse_slo, summarise_level
from weighbridge.cli import app

from .fake_upstream import FakeUpstream, chunk

runner = CliRunner()
MS = 1_000_000


def test_metrics_from_exact_timestamps():
    # sent at 0; content chunks at 100, 120, 140, 160 ms; 4 tokens
    r = RequestRecord(intended=-50 * MS, sent=0, first_token=100 * MS, chunk_times=[100 * MS, 120 * MS, 140 * MS, 160 * MS],
                      done=170 * MS, output_tokens=4, requested_tokens=4, token_source="server")
    assert r.ttft_ms == 100 and r.e2e_ms == 160 and r.itls_ms == [20, 20, 20]
    assert r.tpot_ms == pytest.approx(20)  # (160 − 100) / (4 − 1)
    assert r.e2e_intended_ms == 210
    slow = RequestRecord(intended=None, sent=0, first_token=900 * MS, chunk_times=[900 * MS, 1000 * MS], done=MS * 1000,
                         output_tokens=2, requested_tokens=8)
    bad = RequestRecord(intended=None, sent=0, error="http_500", done=5 * MS)
    res = summarise_level("closed", 2, [r, slow, bad], wall_s=2.0, cpu_s=0.1, slo=parse_slo("ttft=500ms,tpot=50ms"),
                          offered_rps=None, gpu_hour_usd=3.6)
    assert (res.ok, res.errors, res.rps, res.output_tps) == (2, {"http_500": 1}, 1.0, 3.0)
    assert res.goodput_rps == 0.5  # only the first request meets both SLOs
    assert res.ttft_ms["p50"] == 500 and res.short_outputs == 1 and res.client_cpu == 0.05
    assert res.cost_per_mtok_usd == pytest.approx(3.6 / 3600 / 3.0 * 1e6)


def test_slo_parsing():
    s = parse_slo("ttft=500ms, tpot=0.05s,e2e=2s")
    assert (s.ttft_ms, s.tpot_ms, s.e2e_ms) == (500, 50, 2000)
    with pytest.raises(ValueError):
        parse_slo("latency=5")
    assert not SLO().given


def test_prompts_vary_and_have_the_asked_length():
    ps = synthetic_prompts(50, 130)
    assert len(set(ps)) == 50 and len({p.split(":")[0] for p in ps}) == 50  # unique prefixes defeat a prefix cache
    assert all(95 <= len(p.split()) <= 115 for p in ps)


def _timed_stream(h, body, n):
    h.start_stream()
    h.event(chunk(role="assistant"))  # role-only: must not stop the TTFT clock
    h.event(chunk("a"), delay=0.2)
    for w in "bcd":
        h.event(chunk(w), delay=0.05)
    h.event(chunk(finish="length"))
    h.event({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 4}})
    h.event("[DONE]")


def test_fake_upstream_timing_ttft_and_itl_match_the_server():
    with FakeUpstream(_timed_stream) as up:
        async def go():
            from weighbridge.bench.rawhttp import RawClient
            client = RawClient(up.base_url)
            try:
                return await stream_once(client, Target(up.base_url, "m"), "hi", 4)
            finally:
                await client.aclose()
        r = asyncio.run(go())
    assert r.ok and r.output_tokens == 4 and r.token_source == "server" and r.prompt_tokens == 12
    assert 195 <= r.ttft_ms < 230
    assert all(45 <= x < 80 for x in r.itls_ms)


def _faulty(h, body, n):
    kind = n % 6
    if kind == 1:
        h.send_json(500, {"error": "boom"})
    elif kind == 2:
        h.start_stream()
        h.event(chunk("half"))
        h.connection.shutdown(2)  # reset mid-stream
    elif kind == 3:
        h.start_stream()
        h.wfile.write(b"data: {broken\n\n")
        h.wfile.flush()
    elif kind == 4:
        h.start_stream()
        time.sleep(1.2)  # a stall past the client timeout
    else:
        _timed_stream(h, body, n)


def test_fake_upstream_faults_are_counted_and_excluded():
    with FakeUpstream(_faulty) as up:
        results, stop = asyncio.run(sweep(Target(up.base_url, "m"), mode="closed", levels=[2], input_tokens=8,
                                          output_tokens=4, requests=12, duration_s=None, warmup=0, slo=SLO(),
                                          timeout_s=0.6, max_error_rate=1.0))
    r = results[0]
    assert r.requests == 12 and r.ok == 4
    assert r.errors == {"http_500": 2, "truncated": 2, "malformed_response": 2, "timeout": 2}
    assert 195 <= r.ttft_ms["p50"] < 260  # figures come from the successful requests only


def test_fake_upstream_open_loop_reports_offered_and_intended_latency():
    with FakeUpstream(_timed_stream) as up:
        results, _ = asyncio.run(sweep(Target(up.base_url, "m"), mode="open", levels=[20], input_tokens=8,
                                       output_tokens=4, requests=10, duration_s=None, warmup=0, slo=SLO(), poisson=True))
    r = results[0]
    assert r.offered_rps == 20 and r.ok == 10 and r.e2e_intended_ms["p50"] >= r.e2e_ms["p50"]


def test_sweep_stops_at_saturation():
    with FakeUpstream(lambda h, body, n: h.send_json(503, {"error": "busy"})) as up:
        results, stop = asyncio.run(sweep(Target(up.base_url, "m"), mode="closed", levels=[1, 2, 4], input_tokens=8,
                                          output_tokens=4, requests=4, duration_s=None, warmup=0, slo=SLO()))
    assert len(results) == 1 and "error rate" in stop


@pytest.mark.parametrize("mode,level", [("closed", 2), ("open", 50)])
def test_fake_upstream_saturated_level_stops_early(mode, level):
    with FakeUpstream(lambda h, body, n: h.send_json(503, {"error": "busy"})) as up:
        results, stop = asyncio.run(sweep(Target(up.base_url, "m"), mode=mode, levels=[level], input_tokens=8,
                                          output_tokens=4, requests=200, duration_s=None, warmup=0, slo=SLO()))
    assert 10 <= results[0].requests < 200 and results[0].errors == {"http_503": results[0].requests}


def run_bench(tmp_path, *args: str) -> dict:
    """`weighbridge bench ARGS` with its store, report and JSON under tmp_path; returns the JSON."""
    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", *args, "--json", str(out), "--store", str(tmp_path / "wb.db"),
                            "--report", str(tmp_path / "bench.html")])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


def test_bundled_model_under_a_real_llama_cpp_server(tmp_path):
    data = run_bench(tmp_path, "smollm2-135m", "--concurrency", "1,2", "--requests", "3", "--warmup", "1",
                     "--output-tokens", "8", "--threads", "2", "--slo", "ttft=5s")
    assert [lv["level"] for lv in data["levels"]] == [1, 2]
    for lv in data["levels"]:
        assert lv["ok"] == 3 and lv["ttft_ms"]["p50"] > 0 and lv["output_tps"] > 0 and lv["goodput_rps"] is not None
    assert "ttft" in data["definitions"] and "llama_cpp.server" in data["target"]


def test_url_target_needs_a_model_id():
    r = runner.invoke(app, ["bench", "http://127.0.0.1:9/v1"])
    assert r.exit_code == 2 and "--server-model" in r.output


def test_fake_upstream_results_are_stored_and_reported(tmp_path):
    import sqlite3
    with FakeUpstream(_timed_stream) as up:
        bench_id = run_bench(tmp_path, up.base_url, "--model", "m", "--concurrency", "1,2", "--requests", "4",
                             "--warmup", "0")["id"]
    db = sqlite3.connect(tmp_path / "wb.db")
    assert db.execute("SELECT COUNT(*) FROM bench_levels WHERE bench_id=?", (bench_id,)).fetchone()[0] == 2
    page = (tmp_path / "bench.html").read_text()
    assert page.count("<svg") == 3 and "time to first token" in page and "Latency" in page


def test_bundled_target_counts_tokens_with_its_tokenizer_and_suite_prompts(tmp_path):
    data = run_bench(tmp_path, "smollm2-135m", "--concurrency", "1", "--requests", "3", "--warmup", "0",
                     "--output-tokens", "8", "--threads", "2", "--suite", "builtin:starter")
    lv = data["levels"][0]
    assert lv["token_sources"] == ["tokenizer"]  # llama_cpp.server sends no usage: the GGUF's tokenizer counts
    assert data["settings"]["prompts"] == "builtin:starter" and lv["ok"] == 3


def test_fake_upstream_timeout_and_error_allowance_are_options_the_output_reports(tmp_path):
    out = tmp_path / "b.json"
    with FakeUpstream(_faulty) as up:
        r = runner.invoke(app, ["bench", up.base_url, "--model", "m", "--concurrency", "2", "--requests", "12",
                                "--warmup", "0", "--timeout-s", "0.6", "--max-error-rate", "1.0", "--json", str(out),
                                "--store", str(tmp_path / "wb.db"), "--report", str(tmp_path / "bench.html")])
    text = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "timeout 0.6s · a level stops past 100% errors" in text
    assert "progress level 2:" in text  # CliRunner is not a terminal: one plain line per level
    assert re.search(r"level 2 errors: .*timeout×\d+.* \(\d+/12, allowed 100%\)", text)
    data = json.loads(out.read_text())
    assert data["settings"]["timeout_s"] == 0.6 and data["settings"]["max_error_rate"] == 1.0
    assert data["levels"][0]["errors"]["timeout"] >= 1


def _batching_server(capacity: int, step_s: float, tokens: int):
    """A test double of a batching server whose capacity is known: at most ``capacity`` sequences
    decode at once, each token takes ``step_s``; a request beyond them waits in a queue for a slot."""
    import threading

    slots = threading.BoundedSemaphore(capacity)

    def script(h, body, n):
        with slots:
            h.start_stream()
            for _ in range(tokens):
                h.event(chunk("tok"), delay=step_s)
            h.event({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": tokens}})
            h.event("[DONE]")
    return script


def test_fake_batching_server_auto_finds_the_knee_of_its_capacity_within_one_step(tmp_path):
    from weighbridge.pricing.deploy_cost import check_levels
    from weighbridge.pricing.scenario import LatencySLO

    with FakeUpstream(_batching_server(capacity=4, step_s=0.01, tokens=8)) as up:
        out = tmp_path / "b.json"
        r = runner.invoke(app, ["bench", up.base_url, "--model", "m", "--auto", "--slo", "ttft=45ms", "--requests",
                                "40", "--warmup", "0", "--output-tokens", "8", "--json", str(out),
                                "--store", str(tmp_path / "wb.db"), "--report", str(tmp_path / "bench.html")])
    print(r.output)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    auto = data["settings"]["auto"]
    probes = [(p["level"], p["meets"]) for p in auto["probes"]]
    assert auto["found"] == 4, probes  # its capacity: one more request in flight waits a whole answer for a slot
    assert probes[:4] == [(1, True), (2, True), (4, True), (8, False)]  # doubled, then bisected
    assert (5, False) in probes and len(probes) <= 6
    text = " ".join(r.output.split())
    assert "auto: the highest concurrency meeting the SLO (ttft p95 ≤ 45 ms, errors ≤ 1%) is 4" in text
    assert "`weighbridge cost` prices this bench at 4 for this SLO" in text
    # the level `weighbridge cost` picks from this bench for the same SLO is the knee
    checks = check_levels(data["levels"], LatencySLO(ttft="45ms"))
    assert max((c for c in checks if c.meets), key=lambda c: c.rps).level == 4


def test_auto_needs_an_slo_and_one_starting_level():
    r = runner.invoke(app, ["bench", "http://127.0.0.1:9/v1", "--model", "m", "--auto"])
    assert r.exit_code == 2 and "give --slo" in r.output
    r = runner.invoke(app, ["bench", "http://127.0.0.1:9/v1", "--model", "m", "--auto", "--slo", "ttft=1s",
                            "--concurrency", "1,2"])
    assert r.exit_code == 2 and "starts from one level" in r.output
