"""Content-hash IDs: every insert is idempotent and every stage finds its pending work by anti-join."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

_SPACE = re.compile(r"\s+")


def content_hash(*parts: Any, length: int = 16) -> str:
    """A short, stable hex digest of JSON-serialisable parts (64 bits by default)."""
    payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def normalize_for_id(text: str) -> str:
    """Light normalisation for query IDs: NFKC and collapsed whitespace.

    Deliberately lighter than dedup normalisation: IDs must not merge texts that a person would call
    different; near-identity is the dedup stage's job, where it is recorded with a reason.
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def query_id(text: str) -> str:
    return "q" + content_hash(normalize_for_id(text))


def response_id(qid: str, responder_model: str, sample_index: int) -> str:
    return "r" + content_hash(qid, responder_model, sample_index)


def vote_id(rid: str, judge_model: str) -> str:
    return "v" + content_hash(rid, judge_model)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks (exports and imports can be large)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
