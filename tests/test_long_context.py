"""builtin:long-context: generated needle and multi-fact cases at chosen lengths and depths, the
same on every machine; lengths a model's context cannot hold are not run (never truncated); the
report lays accuracy out by length × depth. A real SmolLM2 answers the short ones."""

from __future__ import annotations

import pytest

from weighbridge.core.errors import ConfigError
from weighbridge.suites import load_suite
from weighbridge.suites.longcontext import generate, parse_options


def test_cases_are_generated_deterministically_at_each_length_and_depth():
    a = load_suite("builtin:long-context?lengths=1k,4k&depths=0,50,100")
    b = load_suite("builtin:long-context?lengths=1k,4k&depths=0,50,100")
    assert [c.id for c in a.cases] == [c.id for c in b.cases] and a.content_hash == b.content_hash
    assert len(a.cases) == 2 * 3 * 2 and {c.workload for c in a.cases} == {"long-context"}
    for c in a.cases:
        code = c.scorers[0]["value"][0]
        text = c.rendered_messages()[0]["content"]
        assert code in text and text.count(code) == 1  # the fact is stated once, nowhere else
    needle0 = next(c for c in a.cases if c.id == "lc-needle-4k-d0")
    needle100 = next(c for c in a.cases if c.id == "lc-needle-4k-d100")
    doc0, doc100 = needle0.prompt, needle100.prompt
    assert doc0.index(needle0.scorers[0]["value"][0]) < len(doc0) * 0.1
    assert doc100.index(needle100.scorers[0]["value"][0]) > len(doc100) * 0.85
    assert 3500 <= needle0.context_tokens <= 4300


@pytest.mark.parametrize("ref,message", [
    ("builtin:long-context?lengths=12q", "give tokens as 2000 or 2k"),
    ("builtin:long-context?depths=150", "between 0 and 100"),
    ("builtin:long-context?colour=red", "unknown option 'colour'"),
    ("builtin:long-context?facts=1", "from 2 to 10"),
])
def test_bad_options_are_clear_errors(ref, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(ref)


def test_a_128k_token_case_builds_fast_enough_to_generate_per_run():
    cases = generate(parse_options("lengths=128k&depths=50"))
    assert all(c["context_tokens"] > 120_000 for c in cases)


def test_lengths_beyond_a_models_context_are_not_run_and_the_grid_shows_them(tmp_path):
    from typer.testing import CliRunner

    from weighbridge.cli import app as cli
    from weighbridge.storage.store import Store
    from weighbridge.analysis.summary import summarise_run

    from .conftest import write

    cfg = write(tmp_path / "w.yaml", "models:\n  - {name: smol, backend: llamacpp, bundled: smollm2-135m, n_threads: 2,"
                                     " n_ctx: 2048, params: {max_tokens: 24}}\n"
                                     "suites: ['builtin:long-context?lengths=1k,4k&depths=0,100']\n"
                                     "store: r.db\nreport: r.html\n")
    r = CliRunner().invoke(cli, ["bakeoff", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "4 case(s) not run" in out and "context window 2,048" in out
    store = Store(str(tmp_path / "r.db"))
    m = summarise_run(store, store.latest_run()).models[0]
    assert (m.jobs, m.not_run) == (4, 4)
    assert set(m.long_context) == {"1k", "4k"} and set(m.long_context["1k"]) == {"0", "100"}
    assert all(cell["jobs"] == 2 for cell in m.long_context["1k"].values())
    assert all(cell["jobs"] == 0 for cell in m.long_context["4k"].values())  # in the grid, as not run
    assert "long context" in out and "1k" in out
