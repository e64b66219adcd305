"""The agent loop: the real bundled Qwen2.5-Coder-0.5B drives a sandboxed order desk in-process; a
scripted model (named so in each test) injects the hostile answers - unknown tools, arguments that
are not JSON, calls forever, a dying environment - each of which ends in its own termination reason
while the run goes on. End states are compared with the gold calls' replay."""

import asyncio
import json
import time

import pytest

from weighbridge.core.types import Generation, Timings
from weighbridge.backends.toolcalls import make_call
from weighbridge.eval.agent.loop import Limits, run_episode
from weighbridge.eval.agent.outcome import first_difference, replay
from weighbridge.eval.agent.sandboxed import EnvironmentFailed, SandboxedEnvironment

from .test_agent_environment import ORDERS, STATE


pytestmark = pytest.mark.usefixtures("need_bubblewrap")


class Scripted:
    """A model that answers from a script: each step a text or a list of (name, raw arguments) calls."""

    def __init__(self, script):
        self.script, self.requests = list(script), []

    async def generate(self, request):
        self.requests.append(request)
        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        step = self.script.pop(0) if self.script else [("get_order", '{"order_id": "A1"}')]  # forever, once out
        if isinstance(step, str):
            cut = step.endswith("…")  # a reply that ran into max_tokens
            return Generation.from_timings(t, text=step, finish_reason="length" if cut else "stop", prompt_tokens=10,
                                           completion_tokens=3, token_source="engine")
        calls = [make_call(f"c{i}", name, raw) for i, (name, raw) in enumerate(step)]
        return Generation.from_timings(t, text="", finish_reason="tool_calls", prompt_tokens=10, completion_tokens=5,
                                       token_source="engine", tool_calls=calls)


def episode(model, turns, **kw):
    with SandboxedEnvironment(ORDERS, "Orders", STATE, call_timeout_s=2) as env:
        ep = asyncio.run(run_episode(model, env, turns, **kw))
        try:
            return ep, env.state()
        except EnvironmentFailed:  # an environment that ended the episode has no state to read
            return ep, None


def test_scripted_model_mistakes_come_back_as_tool_errors_and_the_turns_go_on():
    model = Scripted([[("refund", '{"order_id": "A1", "amount": 5}'), ("no_such_tool", "{}")],
                      [("refund", "{not json"), ("refund", '{"order_id": "A1", "amount": 999}')],
                      "Refunded 5 on A1.",
                      [("get_order", '{"order_id": "B2"}')],
                      "B2 is a mug."])
    ep, state = episode(model, ["Refund 5 on A1.", "What is B2?"])
    assert ep.termination == "answered" and ep.turns_done == 2 and ep.final_text == "B2 is a mug."
    assert ep.tool_calls == 5 and ep.tool_errors == 3
    errors = [c["error"] for s in ep.steps for c in s.calls if not c["ok"]]
    assert "no tool named 'no_such_tool'" in errors[0] and "not JSON" in errors[1] and "cannot refund 999" in errors[2]
    # the model saw every result and every error, in order, as tool messages
    tool_msgs = [m for m in model.requests[2].messages if m["role"] == "tool"]
    assert tool_msgs[0]["content"] == "refunded 5" and "error" in json.loads(tool_msgs[1]["content"])  # text as text
    assert state["refunds"] == [{"order": "A1", "amount": 5, "reason": None}]
    assert first_difference(replay(ORDERS, "Orders", STATE, [[{"name": "refund", "arguments": {"order_id": "A1",
                                                                                                "amount": 5}}], []]),
                            state) is None


@pytest.mark.parametrize("script,limits,reason", [
    ([], Limits(steps_per_turn=4), "step_limit"),  # calls forever
    ([[("nope", "{}")]] * 10, Limits(tool_errors=3), "tool_error_budget"),
    ([], Limits(tokens=40), "token_limit"),
    ([[("wait_forever", "{}")]], Limits(), "environment"),
    (["I will now refund the order by calling refu…"], Limits(), "cut_off"),  # not an answer, not a call
])
def test_scripted_model_that_never_stops_ends_with_its_reason(script, limits, reason):
    ep, state = episode(Scripted(script), ["Go."], limits=limits)
    assert ep.termination == reason, (ep.termination, ep.reason)
    assert ep.reason and ep.steps
    assert (state is None) == (reason == "environment")  # a timed-out environment is gone, with its state


def test_end_states_are_compared_as_json_with_the_first_differing_path():
    gold = {"orders": {"A1": {"paid": 25.0}}, "refunds": [{"order": "A1", "amount": 15}]}
    assert first_difference(gold, {"orders": {"A1": {"paid": 25}}, "refunds": [{"order": "A1", "amount": 15.0}]}) is None
    assert first_difference(gold, {"orders": {"A1": {"paid": 40.0}}, "refunds": []}) == "$.orders.A1.paid: 40.0, expected 25.0"
    assert first_difference(gold, {**gold, "log": []}) == "$.log: not expected (got [])"
    assert first_difference(gold, {**gold, "log": []}, subset=True) is None
    assert first_difference({"ok": True}, {"ok": 1}) == "$.ok: 1, expected true"
    with pytest.raises(ValueError, match="gold call refund of turn 1 failed"):
        replay(ORDERS, "Orders", STATE, [[{"name": "refund", "arguments": {"order_id": "A1", "amount": 1000}}]])


@pytest.fixture(scope="module")
def qwen():
    from weighbridge.backends.llamacpp import LlamaCppBackend
    from weighbridge.core.config import ModelSpec

    backend = LlamaCppBackend(ModelSpec(name="qwen", backend="llamacpp", bundled="qwen2.5-coder-0.5b", n_ctx=4096))
    yield backend
    asyncio.run(backend.aclose())


def test_the_bundled_qwen_runs_an_episode_in_process_against_the_sandboxed_desk(qwen):
    ep, state = episode(qwen, ["Order A1's kettle arrived dented. Refund 15 dollars of order A1."],
                        limits=Limits(steps_per_turn=4), max_tokens=128)
    assert ep.termination in ("answered", "step_limit", "tool_error_budget"), ep.reason
    assert ep.steps and all(s.latency_ms > 0 for s in ep.steps)
    done = [c for s in ep.steps for c in s.calls if c.get("ok") and c["name"] == "refund"]
    assert len(state["refunds"]) == len(done)  # what the environment holds is what the recorded calls did
    print(f"qwen: {ep.termination}, {len(ep.steps)} steps, {ep.tool_calls} calls, {ep.tool_errors} errors, "
          f"refunds {state['refunds']}")


def test_the_bundled_qwen_runs_an_episode_through_llama_cpp_server(qwen_server):
    from weighbridge.backends.openai import OpenAIBackend
    from weighbridge.core.config import ModelSpec

    backend = OpenAIBackend(ModelSpec(name="qwen-server", backend="openai", base_url=qwen_server, model="qwen"))

    async def go():
        try:
            await backend.preflight()
            with SandboxedEnvironment(ORDERS, "Orders", STATE, call_timeout_s=5) as env:
                ep = await run_episode(backend, env, ["Look up order B2 and tell me what was bought."],
                                       limits=Limits(steps_per_turn=4), max_tokens=128)
                return ep, env.state()
        finally:
            await backend.aclose()

    ep, state = asyncio.run(go())
    assert ep.termination in ("answered", "step_limit", "tool_error_budget"), ep.reason
    calls = [c for s in ep.steps for c in s.calls]
    assert calls, [s.text for s in ep.steps]  # the calls the server handed over (as text: no tool parser) ran
    looked_up = [c for c in calls if c["name"] == "get_order" and c.get("ok")]
    assert all(c["result"] == STATE["orders"][c["arguments"]["order_id"]] for c in looked_up)
    assert state["refunds"] == []  # a lookup changes nothing
    print(f"qwen via llama_cpp.server: {ep.termination} ({ep.reason}), finish {[s.finish_reason for s in ep.steps]}, calls "
          f"{[(c['name'], c['arguments']) for c in calls]}, answer {ep.final_text[:80]!r}")


def test_scripted_model_sees_held_back_tools_only_from_their_turn_appended_last():
    model = Scripted(["first answer", "second answer"])
    ep, _ = episode(model, ["one", "two"], held_back={1: ["get_order"]})
    first = [t["function"]["name"] for t in model.requests[0].tools]
    second = [t["function"]["name"] for t in model.requests[1].tools]
    assert "get_order" not in first and second[-1] == "get_order" and set(second) == set(first) | {"get_order"}
    assert ep.termination == "answered" and ep.turns_done == 2
