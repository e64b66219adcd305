"""Reasoning models: thinking kept apart from the answer and counted, an answer whose thinking was cut
off censored (never scored as wrong), thinking as a knob (on/off/budget) - with the bundled Qwen told
to think between <think> tags (it really writes them) and, for what only a server does
(``reasoning_content``, usage's reasoning_tokens, a pre-filled template), a fake upstream."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli
from weighbridge.core.reasoning import split_reasoning

from .conftest import write
from .fake_upstream import FakeUpstream, chunk

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# -- telling thinking from answer ----------------------------------------------------------------

@pytest.mark.parametrize("text, field, opened, want", [
    ("<think>a</think>\nanswer", None, False, ("a", "answer", "closed")),
    ("<THINK>a</Think> answer", None, False, ("a", "answer", "closed")),
    ("thought</think>answer", None, False, ("thought", "answer", "prefilled")),  # the template opened it
    ("<think>still going", None, False, ("still going", "", "open")),
    ("plain answer", None, False, ("", "plain answer", "none")),
    ("x<think>a</think>y<think>b</think>z", None, False, ("a\nb", "xyz", "closed")),
    ("answer", "field thinking", False, ("field thinking", "answer", "field")),
    ("cut off mid thought", None, True, ("cut off mid thought", "", "open")),  # opened in the prompt, never closed
    ("thought</think>42", None, True, ("thought", "42", "prefilled")),
])
def test_thinking_is_told_from_the_answer(text, field, opened, want):
    t = split_reasoning(text, field, opened=opened)
    assert (t.reasoning, t.answer, t.state) == want


def test_only_thinking_cut_off_by_max_tokens_is_censored():
    assert split_reasoning("<think>going").censored("length")
    assert not split_reasoning("<think>going").censored("stop")  # it stopped by itself: an (empty) answer
    assert not split_reasoning("<think>a</think>partial answ").censored("length")  # an answer was being given
    assert split_reasoning("", "thinking in a field").censored("length")
    assert not split_reasoning("a plain answer cut").censored("length")


def test_a_hostile_answer_full_of_tags_is_split_in_linear_time():
    import time

    text = "<think>" * 200_000 + "</think>" * 200_000 + "answer"
    t0 = time.perf_counter()
    t = split_reasoning(text)
    assert time.perf_counter() - t0 < 2 and t.answer.endswith("answer")


# -- the bundled Qwen, told to think -------------------------------------------------------------

@pytest.mark.slow
def test_thinking_on_off_budget_and_censored_answers_with_the_real_qwen(tmp_path, monkeypatch):
    shutil.copy(EXAMPLES / "reasoning-cases.yaml", tmp_path)
    text = (EXAMPLES / "reasoning.yaml").read_text().replace("reasoning-cases.yaml", "reasoning-cases.yaml[:6]")
    write(tmp_path / "reasoning.yaml", text)
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(cli, ["bakeoff", "-c", "reasoning.yaml", "--json", "out.json"])
    print(r.output)
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "out.json").read_text())
    models = {m["model"]: m for m in data["models"]}
    think, off, budget, tight = (models[f"qwen@{v}"] for v in ("think", "no-think", "budget-16", "max-24"))
    t = think["thinking"]
    assert t["with_thinking"] >= 5 and t["reasoning_tokens"] > 0 and t["censored"] == 0
    assert 0 < t["reasoning_tokens"] < think["completion_tokens"]  # thinking is part of the output, not all of it
    assert think["cost"]["total_usd"] > t["reasoning_usd"] > 0  # priced apart, and inside the total
    assert think["cost"]["per_success_usd"] == pytest.approx(think["cost"]["total_usd"] / think["passed"])
    assert t["tokens_per_success"] == pytest.approx(think["completion_tokens"] / think["passed"])
    assert off["thinking"]["with_thinking"] == 0  # an empty thinking block opened its answers
    assert budget["thinking"]["closed_at_budget"] >= 1
    # max_tokens 24 cuts the thinking off: those answers are censored - not scored, counted and said
    c = tight["thinking"]
    assert c["censored"] >= 3 and c["censored_max_tokens"] == [24]
    assert f"{c['censored']} of {c['answered']} answers censored - the thinking was cut off by max_tokens (24)" \
        in r.output.replace("\n", " ")
    from weighbridge.storage.store import Store

    rows = [g for g in Store(tmp_path / "reasoning.db").generations(data["run_id"]) if g.model == "qwen@max-24"]
    cut = [g for g in rows if g.generation.raw.get("censored")]
    assert len(cut) == c["censored"] and all(g.scores == [] and not g.passed for g in cut)
    assert all(g.generation.text == "" and g.generation.reasoning for g in cut)  # the thinking is kept, apart
    kept = [g for g in rows if g.generation.raw.get("thinking", {}).get("state") == "closed"]
    assert kept and all("<think>" not in g.generation.text for g in kept)
    # the variants table compares thinking on and off with paired statistics
    group = data["variants"][0]
    assert group["reference"] == "think" and {v["variant"] for v in group["variants"]} == {
        "think", "no-think", "budget-16", "max-24"}
    assert all(v["comparison"]["pairs"] == 6 for v in group["variants"] if not v["reference"])
    html = (tmp_path / "reasoning-report.html").read_text()
    assert "censored: thinking cut off by max_tokens (24)" in html and "class=thinking" in html


# -- what only a server does: a fake upstream ------------------------------------------------------

def _served(tmp_path, script, extra: str = "", cases: str | None = None):
    write(tmp_path / "cases.yaml", cases or "cases:\n  - {id: q, prompt: 'What is 6 * 7?', expected: '42', "
                                            "scorers: [contains]}\n")
    with FakeUpstream(script) as up:
        write(tmp_path / "weighbridge.yaml", f"""\
models:
  - name: r1
    base_url: {up.base_url}
    model: fake-model
    params: {{max_tokens: 64}}
    price: {{input_per_mtok: 0.5, output_per_mtok: 2.0}}
{extra}
suites: [cases.yaml]
""")
        r = runner.invoke(cli, ["bakeoff", "-c", str(tmp_path / "weighbridge.yaml"), "--json", str(tmp_path / "o.json"),
                                "--no-cache"])
        posts = up.posts
    assert r.exit_code == 0, r.output
    return json.loads((tmp_path / "o.json").read_text())["models"][0], posts, r.output


def test_fake_upstream_reasoning_content_and_reasoning_tokens_are_kept_apart_and_priced(tmp_path):
    def script(h, body, n):
        h.start_stream()
        h.event({"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "6 times 7 "},
                              "finish_reason": None}]})
        h.event({"choices": [{"index": 0, "delta": {"reasoning_content": "is 42."}, "finish_reason": None}]})
        h.event(chunk("42"))
        h.event(chunk(finish="stop"))
        h.event({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 30,
                                          "completion_tokens_details": {"reasoning_tokens": 25}}})
        h.event("[DONE]")

    m, _, _ = _served(tmp_path, script)
    t = m["thinking"]
    assert m["passed"] == 1 and t["with_thinking"] == 1 and t["reasoning_tokens"] == 25  # the server's own count
    assert t["reasoning_usd"] == pytest.approx(25 * 2.0 / 1e6)  # reasoning tokens × the output price
    assert m["cost"]["total_usd"] == pytest.approx((10 * 0.5 + 30 * 2.0) / 1e6)  # thinking is in the total


def test_fake_upstream_pre_filled_template_leaves_an_unpaired_close_tag(tmp_path):
    def script(h, body, n):
        h.start_stream()
        for piece in ("Six sevens", " make 42.", "</think>", "\n\n42"):
            h.event(chunk(piece))
        h.event(chunk(finish="stop"))
        h.event("[DONE]")

    m, _, _ = _served(tmp_path, script)
    assert m["passed"] == 1 and m["thinking"]["with_thinking"] == 1 and m["thinking"]["censored"] == 0


def test_fake_upstream_thinking_cut_off_is_censored_not_wrong(tmp_path):
    def script(h, body, n):  # DeepSeek-R1's template opens the thinking: the reply never closes it
        h.start_stream()
        h.event(chunk("Let me think about 6 times 7, first 6 times 5 is 30, then"))
        h.event(chunk(finish="length"))
        h.event("[DONE]")

    m, _, out = _served(tmp_path, script, extra="    thinking_prefilled: true")
    assert m["thinking"]["censored"] == 1 and m["passed"] == 0 and m["errors"] == 0
    assert "1 of 1 answers censored" in out.replace("\n", " ")


def test_fake_upstream_thinking_switch_reaches_the_server_as_its_control(tmp_path):
    def script(h, body, n):
        ok = ["42"]
        h.start_stream()
        for w in ok:
            h.event(chunk(w))
        h.event(chunk(finish="stop"))
        h.event("[DONE]")

    _, posts, _ = _served(tmp_path, script, extra="    thinking: off")  # YAML's bare off: a boolean, taken as meant
    assert posts[-1]["chat_template_kwargs"] == {"enable_thinking": False}
    _, posts, _ = _served(tmp_path, script, extra="    thinking: 'on'\n    thinking_control: reasoning_effort")
    assert posts[-1]["reasoning_effort"] == "high" and "chat_template_kwargs" not in posts[-1]
    _, posts, out = _served(tmp_path, script, extra="    thinking_budget: 100")
    assert "thinking_budget is enforced in-process (llamacpp) only" in out.replace("\n", " ")
