"""``weighbridge verify``: each deployment of a model held against its reference answer by answer, on
the real engine - the bundled Qwen at its shipped Q4_K_M in-process against a Q2_K requantisation of
it, against ``llama_cpp.server`` serving the same file without a tool parser, and against the same
server with a chat format that parses tools (llama-cpp-python's ``chatml-function-calling``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from weighbridge.analysis.fidelity import Fidelity, Thresholds, judge
from weighbridge.cli import app as cli
from weighbridge.core.procs import stop

from .conftest import _start_llama_server, write

runner = CliRunner()

SUITE = """\
name: verify-cases
cases:
  - {id: capital, prompt: "What is the capital of France? Answer with one word.", expected: Paris, scorers: [contains]}
  - {id: add, prompt: "What is 17 + 25? Answer with the number only.", expected: "42", scorers: [contains]}
  - id: fib
    system: Reply with one Python code block that defines the requested function. No explanations.
    prompt: "Write a Python function `fib(n: int) -> int` returning the n-th Fibonacci number."
    expected: def fib
    scorers: [contains]
  - id: weather
    tools: &weather
      - {type: function, function: {name: get_weather, description: "Current weather for a city.",
         parameters: {type: object, properties: {city: {type: string}}, required: [city]}}}
      - {type: function, function: {name: get_time, description: "Current local time in a city.",
         parameters: {type: object, properties: {city: {type: string}}, required: [city]}}}
    prompt: What's the weather like in Paris right now?
    expected: [{name: get_weather, arguments: {city: Paris}}]
    scorers: [tool_call]
  - id: time
    tools: *weather
    prompt: What time is it in Sydney at the moment?
    expected: [{name: get_time, arguments: {city: Sydney}}]
    scorers: [tool_call]
  - id: weather-named
    tools: *weather
    tool_choice: {type: function, function: {name: get_weather}}
    prompt: Is it raining in Tokyo?
    expected: [{name: get_weather, arguments: {city: Tokyo}}]
    scorers: [tool_call]
"""


@pytest.mark.slow
def test_verify_tells_a_requantised_file_drifts_and_servers_without_a_tool_parser_break(tmp_path, monkeypatch,
                                                                                       qwen_server):
    from weighbridge.backends.bundled import resolve_bundled
    from weighbridge.backends.quantize import quantize

    qwen = resolve_bundled("qwen2.5-coder-0.5b", "qwen")
    (q2,) = quantize(qwen, ["Q2_K"], tmp_path / "variants", threads=2, allow_requantize=True, stem="qwen")
    fc_base, fc_proc = _start_llama_server(qwen, "qwen", tmp_path / "fc.log",
                                           extra=("--chat_format", "chatml-function-calling"))
    try:
        monkeypatch.chdir(tmp_path)
        write(tmp_path / "cases.yaml", SUITE)
        write(tmp_path / "weighbridge.yaml", f"""\
models:
  - name: qwen
    backend: llamacpp
    n_ctx: 2048
    params: {{max_tokens: 64}}
    variants:
      - {{name: Q4_K_M, reference: true, bundled: qwen2.5-coder-0.5b}}
      - {{name: Q2_K, path: {q2.path}}}
      - {{name: server, backend: openai, base_url: '{qwen_server}', model: qwen, extra_body: {{repeat_penalty: 1.0}}}}
      - {{name: server-default, backend: openai, base_url: '{qwen_server}', model: qwen}}
      - {{name: fc, backend: openai, base_url: '{fc_base}', model: qwen, extra_body: {{repeat_penalty: 1.0}}}}
suites: [cases.yaml]
""")
        r = runner.invoke(cli, ["verify", "--json", "out.json"])
    finally:
        stop(fc_proc)
    print(r.output)
    assert r.exit_code == 1, r.output  # a broken deployment fails CI
    assert "no lockfile at" in r.output and "every deployment was called for all 30 answers (no cache)" in r.output
    group = json.loads((tmp_path / "out.json").read_text())["fidelity"][0]
    rows = {c["candidate"]: c for c in group["candidates"]}
    assert group["reference"] == "qwen@Q4_K_M" and set(rows) == {"qwen@Q2_K", "qwen@server", "qwen@server-default",
                                                                  "qwen@fc"}
    q2k = rows["qwen@Q2_K"]
    assert q2k["items"] == 6 and q2k["stack"]["quantisation"] == {"reference": "Q4_K_M", "candidate": "Q2_K"}
    assert q2k["verdict"] in ("drifts", "faithful")
    assert (q2k["verdict"] == "drifts") == bool(q2k["reasons"])
    assert len(q2k["disagreeing"]) == q2k["answered"] - q2k["normalised"]  # every disagreement is listed by item
    # the same file behind llama_cpp.server, decoding alike (repeat_penalty 1.0): the plain answers agree,
    # but where the model chose to call (tool_choice auto) the calls arrive as text - a client reading
    # message.tool_calls gets none (a named tool_choice it answers by grammar, as tool_calls)
    server = rows["qwen@server"]
    assert server["verdict"] == "broken" and server["calls_as_text"] == 2, server
    assert server["reasons"][0].startswith("tool calls arrive as text in 2 answer(s): the server has no tool parser")
    assert server["stack"]["tool parser"]["candidate"] == "no (calls arrive as text)"
    assert not [k for k in server["disagreeing"] if k.split("#")[0] in ("capital", "add", "fib")], server["disagreeing"]
    assert server["hints"] == []  # it sets repeat_penalty already
    # the server's defaults (repeat_penalty 1.1) are named as the likely cause when answers drift
    default = rows["qwen@server-default"]
    assert default["verdict"] == "broken"
    if default["normalised"] < default["answered"]:
        assert any("repeat_penalty 1.1" in h and "extra_body: {repeat_penalty: 1.0}" in h for h in default["hints"])
    # a chat format that parses tools: every call arrives as tool_calls, none as text; its own prompt
    # format (not the GGUF's template) is another matter, which the agreement figures show
    fc = rows["qwen@fc"]
    assert fc["calls_as_text"] == 0 and fc["candidate_calls"] >= 1, fc
    assert fc["stack"]["tool parser"]["candidate"] == "yes (calls arrive as tool_calls)"
    assert fc["verdict"] in ("drifts", "broken") and fc["reasons"]
    assert "exit 1:" in r.output and "qwen@server" in r.output.split("exit 1:")[1]
    assert "fidelity of qwen" in r.output and "tool calls arrive as text" in r.output
    html = (tmp_path / "weighbridge-report.html").read_text()
    assert "Fidelity of qwen" in html and "data-verdict='broken'" in html

    # judged again from the stored run: no model is called, the verdicts are the same
    run_id = json.loads((tmp_path / "out.json").read_text())["run_id"]
    again = runner.invoke(cli, ["verify", "--run", run_id])
    assert again.exit_code == 1 and "was called" not in again.output
    assert "verify: 4 deployment(s) against their reference" in again.output
    files = runner.invoke(cli, ["verify", "--files-only"])  # the weights alone: there is no lockfile to hold them to
    assert files.exit_code == 2 and "no lockfile" in files.output


def test_verdict_rules_broken_before_drift_and_each_reason_named():
    th = Thresholds()
    ok = Fidelity(candidate="c", reference="r", items=10, answered=10, exact=10, normalised=10)
    assert judge(ok, th) == ("faithful", [])
    drift = Fidelity(candidate="c", reference="r", items=10, answered=10, exact=7, normalised=9, token_drift=0.25)
    verdict, reasons = judge(drift, th)
    assert verdict == "drifts" and reasons == ["answers: 9/10 agree (90% < 95%)",
                                               "completion tokens +25% against the reference"]
    lost = Fidelity(candidate="c", reference="r", items=10, answered=10, exact=10, normalised=10,
                    reference_calling_items=4, calls_lost=3)
    assert judge(lost, th)[0] == "broken" and judge(lost, th)[1][0].startswith("calls lost")
    errors = Fidelity(candidate="c", reference="r", items=10, answered=7, exact=7, normalised=7, candidate_errors=3)
    assert judge(errors, th) == ("broken", ["errors: 3 of 10 items the reference answered"])
    nothing = Fidelity(candidate="c", reference="r", items=3, candidate_errors=3)
    assert judge(nothing, th)[0] == "broken"
    template = Fidelity(candidate="c", reference="r", items=2, answered=2, exact=2, normalised=2,
                        stack={"chat template": {"reference": "aaaa", "candidate": "bbbb"},
                               "tokenizer": {"reference": "x", "candidate": "the server's own (not exposed)"}})
    assert judge(template, th) == ("drifts", ["another chat template: bbbb (reference aaaa)"])  # unknown is not a drift


def test_fake_upstream_llama_server_template_is_recorded_and_another_one_is_drift(tmp_path):
    """llama.cpp's llama-server names the template it renders in /props (a fake one here: the real
    binary is not on PyPI); one that is not the GGUF's is named as drift."""
    import asyncio

    from weighbridge.analysis.stack import stack_facts
    from weighbridge.backends.openai import OpenAIBackend
    from weighbridge.core.config import ModelSpec
    from weighbridge.core.hashing import sha256_text

    from .fake_upstream import FakeUpstream

    template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
    props = {"default_generation_settings": {"n_ctx": 2048}, "chat_template": template, "model_path": "/m/q.gguf"}
    with FakeUpstream(lambda h, body, n: None, gets={"/props": props}) as up:
        up.httpd.models = ["q"]
        backend = OpenAIBackend(ModelSpec(name="q", backend="openai", base_url=up.base_url, model="q"))

        async def go():
            try:
                await backend.preflight()
                return backend.manifest()
            finally:
                await backend.aclose()

        manifest = asyncio.run(go())
    assert manifest["server_kind"] == "llama.cpp" and manifest["chat_template_sha256"] == sha256_text(template)
    facts = stack_facts(manifest, __import__("collections").Counter())
    assert facts["chat template"] == sha256_text(template)[:16]
    f = Fidelity(candidate="c", reference="r", items=1, answered=1, exact=1, normalised=1,
                 stack={"chat template": {"reference": "cd8e9439f0570856", "candidate": facts["chat template"]}})
    assert judge(f, Thresholds())[0] == "drifts"
