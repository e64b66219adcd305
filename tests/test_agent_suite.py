"""builtin:agent and agent cases in a bakeoff: every task's gold calls replay in its sandboxed
environment to the state the task means; a scripted gold-playing model (named so) passes every task
the gold alone decides, through the engine, the store and the ``agent`` scorer; suite mistakes are
errors naming file, line and field."""

import asyncio
import json
import os
import signal
import time

import pytest

from weighbridge.backends.toolcalls import make_call
from weighbridge.core.config import load_config
from weighbridge.core.errors import ConfigError
from weighbridge.core.types import Generation, Timings
from weighbridge.eval.agent.job import gold_states
from weighbridge.storage.store import Store
from weighbridge.suites import load_suite

from .conftest import write

pytestmark = pytest.mark.usefixtures("need_bubblewrap")


def _replays(cases):
    async def go():
        return [g["states"] for g in await asyncio.gather(*(gold_states(c, "bubblewrap") for c in cases))]
    return asyncio.run(go())


def test_builtin_agent_has_thirty_tasks_over_three_environments_one_and_multi_turn():
    suite = load_suite("builtin:agent")
    envs = {c.environment_source.class_name for c in suite.cases}
    assert len(suite.cases) >= 30 and len(envs) >= 3
    assert any(len(c.turns) > 1 for c in suite.cases) and any(len(c.turns) == 1 for c in suite.cases)
    declines = [c for c in suite.cases if not any(c.gold)]
    assert len(declines) >= 8  # ask for a detail, decline, or only answer
    failing_tools = [c for c in suite.cases if set(c.initial_state) & {"tracking_outages", "disk_full_writes",
                                                                       "search_outages"}]
    assert len(failing_tools) >= 3


def test_every_gold_action_list_replays_to_its_gold_state():
    suite = load_suite("builtin:agent")
    states = _replays(suite.cases)
    starts = _replays([c.model_copy(update={"gold": [[] for _ in c.turns]}) for c in suite.cases])
    for case, turns, start in zip(suite.cases, states, starts):
        assert len(turns) == len(case.turns)
        if any(case.gold):
            assert turns[-1] != start[-1], f"{case.id}: the gold calls change nothing"
        else:
            assert turns[-1] == start[-1], f"{case.id}: a task with no gold call must leave the state as it was"
    by_id = dict(zip((c.id for c in suite.cases), states))
    assert by_id["shop-refund-capped-by-earlier-refund"][-1]["orders"]["A1005"]["refunded"] == 45.0
    assert by_id["desk-create-then-reassign"][0]["tickets"]["T-6"]["assignee"] is None
    assert by_id["desk-create-then-reassign"][1]["tickets"]["T-6"] | {"comments": []} == {
        "title": "Monitor flickers at desk 12", "team": "desktop", "priority": "high", "status": "in_progress",
        "assignee": "lena", "comments": []}
    assert "/notes/2026-11-30-meeting.md" in by_id["files-rename-note"][-1]["files"]


class GoldPlayer:
    """A scripted model (fake, named so): at each user turn it makes that turn's gold calls, then answers."""

    name = "gold"

    def __init__(self, suite):
        self.gold = {t: [g.model_dump() for g in calls] for c in suite.cases for t, calls in zip(c.turns, c.gold)}
        self.calls = 0

    def identity(self):
        return {"backend": "gold-player"}

    def manifest(self):
        return {"backend": "gold-player"}

    async def preflight(self):
        return None

    async def generate(self, request):
        self.calls += 1
        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        last = request.messages[-1]
        if last["role"] == "user" and self.gold.get(last["content"]):
            calls = [make_call(f"g{i}", c["name"], json.dumps(c["arguments"])) for i, c in
                     enumerate(self.gold[last["content"]])]
            return Generation.from_timings(t, text="", finish_reason="tool_calls", prompt_tokens=100,
                                           completion_tokens=20, token_source="engine", tool_calls=calls)
        return Generation.from_timings(t, text="Done.", finish_reason="stop", prompt_tokens=120, completion_tokens=2,
                                       token_source="engine")

    async def aclose(self):
        return None


def test_scripted_gold_player_passes_every_task_the_gold_decides_through_the_engine(tmp_path):
    from weighbridge.analysis.summary import summarise_run

    cfg = load_config(write(tmp_path / "weighbridge.yaml",
                            "models:\n  - {name: gold, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: x}\n"
                            "suites: ['builtin:agent']\n"))
    suite = load_suite("builtin:agent")
    player = GoldPlayer(suite)
    store = Store(tmp_path / "wb.db")
    stats = asyncio.run(_bake(cfg, store, player))
    rows = {r.case_id: r for r in store.generations(stats.run_id)}
    assert len(rows) == len(suite.cases) and stats.errors == 0
    decided = [c for c in suite.cases if all(
        not isinstance(sp, dict) or not (sp.get("facts") or sp.get("must_call")) for sp in c.scorers)]
    assert len(decided) >= 20
    for case in decided:
        r = rows[case.id]
        assert r.passed, f"{case.id}: {r.scores}"
        trace = r.generation.raw["agent"]
        assert trace["termination"] == "answered" and len(trace["turn_states"]) == len(case.turns)
    summary = summarise_run(store, stats.run_id)
    assert summary.models[0].jobs == len(suite.cases)


async def _bake(cfg, store, player):
    from weighbridge.eval.engine import Bakeoff

    bake = Bakeoff(cfg, store, backends=player if isinstance(player, dict) else {"gold": player})
    await bake.prepare()
    run_id = bake.create_run()
    return await bake.run(run_id)


@pytest.mark.parametrize("case, message, line", [
    ("- id: a\n  environment: nowhere.py\n  turns: [hi]\n  gold: []\n", "environment file not found", 2),
    ("- id: a\n  environment: builtin:nope\n  turns: [hi]\n  gold: []\n", "no built-in environment 'nope'", 2),
    ("- id: a\n  environment: builtin:orders\n  turns: [hi]\n  gold: [[], []]\n", "'gold' has 2 turns", 1),
    ("- id: a\n  prompt: hi\n  turns: [hi]\n  gold: []\n", "give it an 'environment'", 1),
    ("- id: a\n  environment: builtin:orders\n  prompt: hi\n  gold: []\n", "not 'messages' or 'prompt'", 1),
    ("- id: a\n  environment: two.py\n  turns: [hi]\n  gold: []\n", "defines 2 classes", 2),
    ("- id: a\n  environment: broken.py:A\n  turns: [hi]\n  gold: []\n", "broken.py line 2:", 2),
    ("- id: a\n  environment: badlibs.py:A\n  turns: [hi]\n  gold: []\n", "LIBRARIES is a list", 2),
    ("- id: a\n  environment: deep.py:A\n  turns: [hi]\n  gold: []\n", "nested too deeply", 2),
])
def test_agent_case_mistakes_name_the_file_line_and_field(tmp_path, case, message, line):
    write(tmp_path / "two.py", "class A:\n    pass\n\n\nclass B:\n    pass\n")
    write(tmp_path / "broken.py", "class A:\n    def f(self:\n")
    write(tmp_path / "badlibs.py", "LIBRARIES = [n for n in 'ab']\n\n\nclass A:\n    pass\n")
    write(tmp_path / "deep.py", "x = " + "-" * 300_000 + "1\n\n\nclass A:\n    pass\n")  # the parser runs out
    path = write(tmp_path / "suite.yaml", case)
    with pytest.raises(ConfigError) as e:
        load_suite(path)
    assert message in str(e.value) and e.value.line == line, str(e.value)


def test_a_suite_names_environments_and_cases_merge_their_state_over_them(tmp_path):
    write(tmp_path / "envs" / "counter.py", "class Counter:\n    def load_state(self, s):\n        self.n = s['n']\n"
          "        self.step = s['step']\n\n    def bump(self) -> int:\n        '''Add the step.'''\n"
          "        self.n += self.step\n        return self.n\n")
    path = write(tmp_path / "suite.yaml", "environments:\n  c:\n    environment: envs/counter.py\n"
                 "    initial_state: {n: 1, step: 2}\n    system: Count.\ncases:\n"
                 "  - {id: a, environment: c, initial_state: {step: 5}, turns: [bump], gold: [[{name: bump}]]}\n")
    case = load_suite(path).cases[0]
    assert case.initial_state == {"n": 1, "step": 5} and case.system == "Count."
    assert _replays([case])[0] == [{"n": 6, "step": 5}]
    bad = write(tmp_path / "bad.yaml", "environments:\n  c: {initial_state: {}}\ncases: []\n")
    with pytest.raises(ConfigError, match="needs 'environment:'") as e:
        load_suite(bad)
    assert e.value.line == 2


def test_a_gold_call_the_environment_refuses_is_a_suite_error_before_the_run(tmp_path):
    write(tmp_path / "suite.yaml", "- id: a\n  environment: builtin:orders\n  initial_state: {today: '2026-01-01', "
          "customers: {}, orders: {}}\n  turns: [hi]\n  gold: [[{name: cancel_order, arguments: {order_id: X}}]]\n")
    cfg = load_config(write(tmp_path / "weighbridge.yaml",
                            "models:\n  - {name: gold, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: x}\n"
                            "suites: [suite.yaml]\n"))
    with pytest.raises(ConfigError, match="case .a.: gold call cancel_order of turn 1 failed") as e:
        asyncio.run(_bake(cfg, Store(tmp_path / "wb.db"), GoldPlayer(load_suite(tmp_path / "suite.yaml"))))
    assert e.value.path == str(tmp_path / "suite.yaml") and e.value.line == 1 and e.value.field == "gold"
    assert not (tmp_path / "wb.db").exists() or not Store(tmp_path / "wb.db").latest_run()  # no run was created


def test_an_environment_from_a_plugin_entry_point_is_read_not_imported(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    from weighbridge.suites import agent_case

    pkg = tmp_path / "shopplugin"
    write(pkg / "__init__.py", "")
    write(pkg / "env.py", "raise SystemExit('imported in weighbridge')\n\n\nclass Shop:\n"
          "    def load_state(self, s):\n        self.n = 0\n\n    def state(self):\n        return {'n': self.n}\n\n"
          "    def ring(self) -> int:\n        '''Ring the bell.'''\n        self.n += 1\n        return self.n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(agent_case, "registered", lambda group: {
        "shop": EntryPoint("shop", "shopplugin.env:Shop", group)} if group == agent_case.ENVIRONMENTS else {})
    src = agent_case.resolve_environment("plugin:shop", None)
    assert src.class_name == "Shop" and src.filename == "env.py"
    with pytest.raises(ValueError, match="no environment plugin 'nope'"):
        agent_case.resolve_environment("plugin:nope", None)


def test_a_case_may_give_a_tools_schema_that_replaces_the_derived_one(tmp_path):
    write(tmp_path / "suite.yaml", (
        "- id: a\n  environment: builtin:orders\n"
        "  initial_state: {today: '2026-01-01', customers: {}, orders: {}}\n  turns: [hi]\n  gold: [[]]\n"
        "  tools:\n    - {type: function, function: {name: get_policy, description: The refund rules - read first.,"
        " parameters: {type: object, properties: {}}}}\n"))
    cfg = load_config(write(tmp_path / "weighbridge.yaml",
                            "models:\n  - {name: gold, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: x}\n"
                            "suites: [suite.yaml]\n"))
    player = GoldPlayer(load_suite(tmp_path / "suite.yaml"))
    seen = []
    original = player.generate

    async def spy(request):
        seen.append(request.tools)
        return await original(request)

    player.generate = spy
    asyncio.run(_bake(cfg, Store(tmp_path / "wb.db"), player))
    offered = {t["function"]["name"]: t["function"] for t in seen[0]}
    assert offered["get_policy"]["description"] == "The refund rules - read first."
    assert "refund_order" in offered and "amount" in offered["refund_order"]["parameters"]["properties"]


class Refuser(GoldPlayer):
    """A scripted model (fake, named so) that declines everything, making no call."""

    name = "refuser"

    async def generate(self, request):
        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        return Generation.from_timings(t, text="I'm sorry, but I can't help with that.", finish_reason="stop",
                                       prompt_tokens=50, completion_tokens=9, token_source="engine")


def test_scripted_refusals_end_as_refused_and_pass_only_where_declining_is_right(tmp_path):
    from weighbridge.analysis.summary import summarise_run

    cfg = load_config(write(tmp_path / "weighbridge.yaml",
                            "models:\n  - {name: refuser, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: x}\n"
                            "suites: ['builtin:agent[:13]']\n"))
    store = Store(tmp_path / "wb.db")
    stats = asyncio.run(_bake(cfg, store, {"refuser": Refuser(load_suite("builtin:agent"))}))
    rows = {r.case_id: r for r in store.generations(stats.run_id)}
    assert {r.generation.raw["agent"]["termination"] for r in rows.values()} == {"refused"}
    assert rows["shop-injected-override-declined"].passed  # declining the injected override is right
    assert not rows["shop-refund-damaged"].passed  # declining a refund the policy allows is not
    assert summarise_run(store, stats.run_id).models[0].agent.terminations == {"refused": 13}


class Interrupting(GoldPlayer):
    """The gold player (fake, named so) that presses Ctrl-C (SIGINT to its own process) at its third episode."""

    def __init__(self, suite, at: int):
        super().__init__(suite)
        self.episodes, self.at = 0, at

    async def generate(self, request):
        if len(request.messages) <= 2:  # the first step of an episode: system and first user turn
            self.episodes += 1
            if self.episodes == self.at:
                os.kill(os.getpid(), signal.SIGINT)  # asyncio.run cancels the run, as at a terminal
                await asyncio.sleep(30)
        return await super().generate(request)


def test_an_interrupted_agent_run_resumes_at_the_episode(tmp_path):
    from weighbridge.eval.engine import Bakeoff

    cfg = load_config(write(tmp_path / "weighbridge.yaml",
                            "models:\n  - {name: gold, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: x,\n"
                            "     concurrency: 1}\nsuites: ['builtin:agent[:5]']\n"))
    suite = load_suite("builtin:agent")
    store = Store(tmp_path / "wb.db")
    bake = Bakeoff(cfg, store, backends={"gold": Interrupting(suite, at=3)})
    asyncio.run(bake.prepare())
    run_id = bake.create_run()
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(bake.run(run_id))
    assert store.run(run_id)["status"] == "interrupted" and len(store.generations(run_id)) == 2
    again = Bakeoff(cfg, store, backends={"gold": GoldPlayer(suite)})
    asyncio.run(again.prepare())
    stats = asyncio.run(again.run(again.reopen_run(run_id)))
    assert stats.skipped_resumed == 2 and stats.model_calls == 3  # only the three episodes not yet stored ran
    assert store.run(run_id)["status"] == "finished" and len(store.generations(run_id)) == 5
