"""Streaming sha256 of files, remembered by (path, size, mtime) so a run does not re-read GBs."""

from __future__ import annotations

import hashlib
import html as _html
import json
import re
import unicodedata
from pathlib import Path

from .filecache import file_key, remembered

_CHUNK = 4 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    """Hash in fixed-size chunks: memory stays flat whatever the file size."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: object) -> str:
    """Hash of a JSON-able object with sorted keys: the same content always gives the same key."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str))


def cached_sha256(path: str | Path) -> str:
    """sha256 of ``path``, reused while the file is unchanged (core/filecache.py)."""
    return remembered("file-hashes", file_key(path), lambda: sha256_file(path),
                      lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v))


_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "″": '"', "‘": "'", "’": "'", "‚": "'", "′": "'",
                         "–": "-", "—": "-", "‑": "-", "\u00a0": " "})
_MARKUP = re.compile(r"[*_`#>\\]")
# a copyright notice line ("Copyright (c) 2025 Lab", "Copyright <year> <holders>"), not a wrapped body line
# that happens to start with the word ("copyright license to reproduce ...")
_NOTICE = re.compile(r"^[\s*#_]*copyright[*_]*\s+(\(c\)\s*|©\s*)?(\d{4}|<year>|\[yyyy\])", re.I)


def _words(text: str) -> str:
    return " ".join(text.split()).casefold()


def license_words(text: str, *, start: str | None = None, end: str | None = None, html: bool = False) -> str:
    """A license text reduced to its words, so copies that differ only in layout compare equal.

    The same agreement reaches users as a GitHub markdown file, a plain-text LICENSE on the Hub or
    an HTML page, with different wrapping, smart or straight quotes and markup; a byte hash would
    call them different texts. What is dropped: markup and link targets, whitespace runs, case,
    quote styles, copyright notice lines (they name the holder, not the terms), and
    anything before ``start`` or after ``end`` (a web page's navigation, Apache's how-to-apply
    appendix). Any change to a word of the terms still changes the result.
    """
    if html:
        text = _html.unescape(_TAG.sub(" ", text))
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = "\n".join(ln for ln in text.splitlines() if not _NOTICE.match(ln))
    words = _words(_MARKUP.sub("", _MD_LINK.sub(r"\1", text)))
    if start and (at := words.find(_words(start))) >= 0:
        words = words[at:]
    if end and (at := words.find(_words(end))) >= 0:
        words = words[: at + len(_words(end))]
    return words


def license_fingerprint(text: str, *, start: str | None = None, end: str | None = None, html: bool = False) -> str:
    """sha256 of :func:`license_words`: the catalog's pin on a license text it does not ship."""
    return sha256_text(license_words(text, start=start, end=end, html=html))
