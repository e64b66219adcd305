"""Tool calls end to end: the ``tool_call`` scorer's rules one by one, calls parsed from text and
assembled from stream deltas, cases with tools and multi-turn histories, and the bundled Qwen2.5
answering tool cases through llama.cpp in-process and through ``llama_cpp.server`` on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest

from weighbridge.backends.base import Request
from weighbridge.backends.toolcalls import calls_from_slots, from_text, make_call
from weighbridge.wire.openai import Accumulator
from weighbridge.scorers import build_scorer

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"},
                                                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                                                "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Current local time in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}


def call(name, **args):
    return make_call(None, name, json.dumps(args))


def score(calls, expected, **spec):
    return build_scorer({"type": "tool_call", **spec}).score_calls(calls, expected)


# -- the scorer ----------------------------------------------------------------------------------

def test_name_and_required_arguments():
    want = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert score([call("get_weather", city="Paris")], want).passed
    s = score([call("get_time", city="Paris")], want)
    assert not s.passed and "called 'get_time', expected 'get_weather'" in s.reason
    s = score([call("get_weather", town="Paris")], want)
    assert not s.passed and "argument 'city' is missing" in s.reason


def test_strings_are_normalised_unless_exact():
    want = [{"name": "get_weather", "arguments": {"city": "São Paulo"}}]
    assert score([call("get_weather", city="  são   PAULO ")], want).passed
    assert not score([call("get_weather", city="são paulo")], want, strings="exact").passed


def test_numbers_within_tolerance_and_types():
    want = [{"name": "f", "arguments": {"n": {"value": 3, "tolerance": 0.5}, "x": 2}}]
    assert score([call("f", n=3.4, x=2.0)], want).passed
    s = score([call("f", n=3.6, x=2)], want)
    assert not s.passed and "± 0.5" in s.reason
    assert not score([call("f", n="3", x=2)], want).passed  # a string is not a number ...
    assert score([call("f", n="3", x=2)], want, coerce_numbers=True).passed  # ... unless asked
    assert not score([call("f", n=True, x=2)], [{"name": "f", "arguments": {"n": {"type": "number"}}}]).passed


def test_acceptable_values_optional_and_extra_arguments():
    want = [{"name": "get_weather", "arguments": {"city": {"one_of": ["Paris", "Paris, FR"]},
                                                  "unit": {"value": "celsius", "optional": True}}}]
    assert score([call("get_weather", city="paris, fr")], want).passed
    assert not score([call("get_weather", city="Lyon")], want).passed
    s = score([call("get_weather", city="Paris", unit="fahrenheit")], want)
    assert not s.passed and "argument 'unit'" in s.reason  # optional, but checked when given
    assert score([call("get_weather", city="Paris", days=3)], want).passed
    s = score([call("get_weather", city="Paris", days=3)], want, extra_arguments="forbid")
    assert not s.passed and "unexpected argument(s) days" in s.reason


def test_nested_objects_and_lists():
    want = [{"name": "book", "arguments": {"trip": {"from": "BER", "to": "SFO", "dates": ["2025-01-03", "2025-01-10"]},
                                           "pax": {"type": "array"}}}]
    got = call("book", trip={"from": "ber", "to": "SFO", "dates": ["2025-01-03", "2025-01-10"], "class": "eco"},
               pax=[{"name": "A"}])
    assert score([got], want).passed
    bad = call("book", trip={"from": "BER", "to": "SFO", "dates": ["2025-01-03"]}, pax=[])
    s = score([bad], want)
    assert not s.passed and "argument 'trip.dates'" in s.reason


def test_parallel_calls_match_in_any_order_with_partial_credit():
    want = [{"name": "get_time", "arguments": {"city": "Tokyo"}}, {"name": "get_weather", "arguments": {"city": "Berlin"}}]
    both = [call("get_weather", city="Berlin"), call("get_time", city="Tokyo")]
    assert score(both, want).passed
    assert not score(both, want, order="strict").passed
    half = score([call("get_time", city="Tokyo")], want)
    assert not half.passed and half.value == 0.5 and "expected call 'get_weather' not made" in half.reason
    extra = score(both + [call("get_time", city="Paris")], want)
    assert not extra.passed and extra.value == pytest.approx(2 / 3)
    assert score(both + [call("get_time", city="Paris")], want, extra_calls="allow").passed


def test_no_call_expected():
    assert score([], "none").passed and score(None, []).passed
    s = score([call("get_weather", city="Paris")], "none")
    assert not s.passed and "expected no call" in s.reason and s.value == 0.0


def test_arguments_that_are_not_json_fail_with_the_reason():
    broken = make_call("c1", "get_weather", '{"city": "Paris"')
    assert broken["arguments"] is None and "not JSON" in broken["error"]
    s = score([broken], [{"name": "get_weather", "arguments": {"city": "Paris"}}])
    assert not s.passed and "arguments are not JSON" in s.reason
    assert "not an object" in make_call("c2", "f", "[1, 2]")["error"]


# -- calls from text and from stream deltas ------------------------------------------------------

def test_hermes_blocks_and_bare_json_calls_are_read_from_text():
    text = ('Let me check.\n<tool_call>\n{"name": "get_time", "arguments": {"city": "Tokyo"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Berlin"}}\n</tool_call>')
    rest, calls = from_text(text, [WEATHER, TIME])
    assert rest == "Let me check." and [c["name"] for c in calls] == ["get_time", "get_weather"]
    assert calls[1]["arguments"] == {"city": "Berlin"}
    rest, calls = from_text('```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```', [WEATHER])
    assert rest == "" and calls[0]["arguments"] == {"city": "Paris"}
    # JSON naming no offered function is an answer, not a call
    rest, calls = from_text('{"name": "Alice", "arguments": "none"}', [WEATHER])
    assert calls == [] and rest.startswith("{")
    _, calls = from_text('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', [WEATHER])
    assert calls[0]["name"] == "get_weather" and "not JSON" in calls[0]["error"]


def _chunk(deltas):
    """A chunk of streamed tool-call deltas as the one chunk model checks it."""
    from weighbridge.wire.openai import parse_chunk

    return parse_chunk({"choices": [{"index": 0, "delta": {"tool_calls": deltas}}]}, chat=True)


def test_stream_deltas_are_assembled_by_index():
    a = Accumulator()
    a.add(_chunk([{"index": 0, "id": "c0", "function": {"name": "get_weather", "arguments": ""}}]))
    a.add(_chunk([{"index": 1, "id": "c1", "function": {"name": "get_time", "arguments": '{"ci'}}]))
    a.add(_chunk([{"index": 0, "function": {"arguments": '{"city": "Ber'}}, {"index": 1, "function": {"arguments": 'ty": "Tokyo"}'}}]))
    a.add(_chunk([{"index": 0, "function": {"arguments": 'lin"}'}}]))
    calls = calls_from_slots(a.slots)
    assert [(c["id"], c["name"], c["arguments"]) for c in calls] == [
        ("c0", "get_weather", {"city": "Berlin"}), ("c1", "get_time", {"city": "Tokyo"})]


def test_a_name_repeated_in_every_delta_names_the_call_once_and_a_split_name_is_joined():
    a = Accumulator()  # llama-cpp-python (chatml-function-calling, or a named tool_choice) resends the name
    for piece in ('{"ci', 'ty": "Pa', 'ris"}'):
        a.add(_chunk([{"index": 0, "id": "c0", "function": {"name": "get_weather", "arguments": piece}}]))
    b = Accumulator()  # a name that arrives in pieces is still put together
    b.add(_chunk([{"index": 0, "id": "c0", "function": {"name": "get_", "arguments": ""}}]))
    b.add(_chunk([{"index": 0, "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]))
    for acc in (a, b):
        assert [(c["name"], c["arguments"]) for c in calls_from_slots(acc.slots)] == [("get_weather", {"city": "Paris"})]


def test_fake_upstream_openai_backend_sends_tools_and_streams_calls(tmp_path):
    from weighbridge.backends.openai import OpenAIBackend
    from weighbridge.core.config import ModelSpec

    from .fake_upstream import FakeUpstream

    def script(h, body, n):
        h.start_stream()
        h.event({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
            "finish_reason": None}]}, delay=0.05)
        for piece in ('{"city"', ': "Paris"}'):
            h.event({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                                  "finish_reason": None}]})
        h.event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        h.event("[DONE]")

    with FakeUpstream(script) as up:
        spec = ModelSpec(name="m", backend="openai", base_url=up.base_url, model="fake-model")
        backend = OpenAIBackend(spec)

        async def go():
            try:
                return await backend.generate(Request(messages=[{"role": "user", "content": "weather?"}],
                                                      tools=[WEATHER], tool_choice="auto"))
            finally:
                await backend.aclose()

        gen = asyncio.run(go())
    assert up.posts[0]["tools"] == [WEATHER] and up.posts[0]["tool_choice"] == "auto"
    assert gen.text == "" and gen.finish_reason == "tool_calls"
    assert gen.tool_calls == [{"id": "call_9", "name": "get_weather", "arguments": {"city": "Paris"},
                               "raw": '{"city": "Paris"}', "error": None}]
    assert gen.ttft_ms is not None and gen.ttft_ms >= 40  # the clock stops at the first tool-call delta


# -- cases --------------------------------------------------------------------------------------

def test_cases_declare_tools_and_histories_with_calls_and_results(tmp_path):
    from weighbridge.eval.jobs import build_request
    from weighbridge.core.config import ModelSpec
    from weighbridge.suites.loader import load_suite

    from .conftest import write

    suite = write(tmp_path / "tools.yaml", f"""
cases:
  - id: follow-up
    tools: [{json.dumps(WEATHER)}]
    messages:
      - {{role: user, content: "Weather in Paris?"}}
      - role: assistant
        tool_calls: [{{id: c1, function: {{name: get_weather, arguments: {{city: Paris}}}}}}]
      - {{role: tool, tool_call_id: c1, content: '{{"temp_c": 21}}'}}
      - {{role: user, content: "And in Berlin?"}}
    expected: [{{name: get_weather, arguments: {{city: Berlin}}}}]
    scorers: [tool_call]
""")
    case = load_suite(str(suite)).cases[0]
    req = build_request(ModelSpec(name="m", backend="openai", base_url="http://x/v1", model="m"), case)
    assert req.tools == [WEATHER]
    assert req.messages[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert req.messages[2] == {"role": "tool", "content": '{"temp_c": 21}', "tool_call_id": "c1"}
    bad = write(tmp_path / "bad.yaml", "cases:\n  - id: x\n    tools: [{type: function, function: {name: 'a b'}}]\n"
                                       "    prompt: hi\n    expected: none\n    scorers: [tool_call]\n")
    from weighbridge.core.errors import ConfigError

    with pytest.raises(ConfigError, match="letters, digits"):
        load_suite(str(bad))


# -- the bundled Qwen, for real ------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen():
    from weighbridge.backends.llamacpp import LlamaCppBackend
    from weighbridge.core.config import ModelSpec

    spec = ModelSpec(name="qwen", backend="llamacpp", bundled="qwen2.5-coder-0.5b", n_ctx=2048,
                     params={"max_tokens": 96})
    backend = LlamaCppBackend(spec)
    yield backend
    asyncio.run(backend.aclose())


def test_bundled_qwen_calls_a_tool_in_process(qwen):
    gen = asyncio.run(qwen.generate(Request(messages=[{"role": "user", "content": "What's the weather in Paris?"}],
                                            tools=[WEATHER, TIME], max_tokens=96)))
    assert gen.tool_calls and gen.tool_calls[0]["name"] == "get_weather", (gen.text, gen.tool_calls)
    assert score(gen.tool_calls, [{"name": "get_weather", "arguments": {"city": "Paris"}}]).passed


def test_a_model_without_a_tool_template_says_so():
    from weighbridge.backends.llamacpp import LlamaCppBackend
    from weighbridge.core.config import ModelSpec
    from weighbridge.core.errors import BackendError

    gemma = LlamaCppBackend(ModelSpec(name="gemma", backend="llamacpp", bundled="gemma3-270m", mode="completion",
                                      n_ctx=512))
    with pytest.raises(BackendError, match="completion mode"):
        asyncio.run(gemma.generate(Request(prompt="hi", tools=[WEATHER], max_tokens=4)))


def test_bundled_qwen_calls_tools_through_llama_cpp_server(qwen_server):
    """llama-cpp-python's server renders the tools with the GGUF's template but parses no calls: the
    openai backend reads them from the text, so the scorer sees the same data either way."""
    from weighbridge.backends.openai import OpenAIBackend
    from weighbridge.core.config import ModelSpec

    backend = OpenAIBackend(ModelSpec(name="qwen-server", backend="openai", base_url=qwen_server, model="qwen"))

    async def go():
        try:
            return [await backend.generate(Request(messages=[{"role": "user", "content": q}], tools=[WEATHER, TIME],
                                                   max_tokens=96))
                    for q in ("What's the weather in Paris?", "Write one short sentence about the sea.")]
        finally:
            await backend.aclose()

    weather, prose = asyncio.run(go())
    assert weather.tool_calls and weather.tool_calls[0]["name"] == "get_weather", weather.text
    assert score(weather.tool_calls, [{"name": "get_weather", "arguments": {"city": "Paris"}}]).passed
    assert prose.tool_calls == [] and prose.text.strip()
    assert score(prose.tool_calls, "none").passed


def test_tool_cases_are_not_run_for_a_model_without_tool_support_and_say_why(tmp_path):
    from typer.testing import CliRunner

    from weighbridge.cli import app as cli
    from weighbridge.storage.store import Store
    from weighbridge.analysis.summary import summarise_run

    from .conftest import write

    write(tmp_path / "s.yaml", f"""cases:
  - {{id: plain, prompt: "Say OK.", scorers: [{{type: contains, value: ok}}]}}
  - id: weather
    tools: [{json.dumps(WEATHER)}]
    prompt: Weather in Paris?
    expected: [{{name: get_weather, arguments: {{city: Paris}}}}]
    scorers: [tool_call]
""")
    cfg = write(tmp_path / "w.yaml", "models:\n  - {name: smol, backend: llamacpp, bundled: smollm2-135m, n_threads: 2,"
                                     " params: {max_tokens: 8}}\nsuites: [s.yaml]\nstore: r.db\nreport: r.html\n")
    r = CliRunner().invoke(cli, ["bakeoff", "-c", str(cfg)])
    assert r.exit_code == 0, r.output  # not an error: the case does not apply to this model
    out = " ".join(r.output.split())  # Rich wraps long lines at the terminal's width
    assert "cases not run" in out and "1 tool case(s) not run - its chat template renders no tools" in out
    store = Store(str(tmp_path / "r.db"))
    summary = summarise_run(store, store.latest_run())
    m = summary.models[0]
    assert (m.jobs, m.errors, m.not_run) == (1, 0, 1) and "tools" not in m.by_workload


def test_the_report_shows_a_tool_call_as_a_call(tmp_path):
    from typer.testing import CliRunner

    from weighbridge.cli import app as cli

    from .conftest import write

    write(tmp_path / "s.yaml", f"""cases:
  - id: weather
    tools: [{json.dumps(WEATHER)}]
    prompt: What's the weather in Paris?
    expected: [{{name: get_weather, arguments: {{city: Paris}}}}]
    scorers: [tool_call]
""")
    cfg = write(tmp_path / "w.yaml", "models:\n  - {name: qwen, backend: llamacpp, bundled: qwen2.5-coder-0.5b, "
                                     "n_threads: 2, n_ctx: 2048, params: {max_tokens: 64}}\nsuites: [s.yaml]\n"
                                     "store: r.db\nreport: r.html\n")
    r = CliRunner().invoke(cli, ["bakeoff", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r.html").read_text()
    assert "→ get_weather(…)" in html and "&quot;city&quot;: &quot;Paris&quot;" in html
