"""Step 4: exact then near-duplicate removal (MinHash LSH), incremental across runs.

Stages, each a plain function: normalise -> shingle -> signature (MinHash.bulk, vectorised) ->
candidates (LSH) -> decide (first seen is canonical). New queries are compared with everything kept
before (signatures are stored, never recomputed) and with each other, in (created_at, query_id) order,
so the canonical member of a cluster is always the earliest stored one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import polars as pl
from datasketch import MinHash, MinHashLSH

from libra.tasks.ids import content_hash

# Punctuation and symbols carry no meaning for duplicate detection: “怎么做？” == “怎么做”.
_STRIP = re.compile(r"[\s\W_]+", re.UNICODE)


@dataclass(frozen=True)
class DedupParams:
    """MinHash LSH settings. With b bands of r rows (b*r = num_perm) a pair of Jaccard similarity s
    becomes a candidate with probability 1 - (1 - s^r)^b; datasketch picks b, r to balance false
    positives and negatives around `threshold`."""

    shingle: str = "char"  # char: character n-grams; word: jieba word n-grams
    ngram: int = 5
    num_perm: int = 128
    threshold: float = 0.7

    @property
    def method(self) -> str:
        return f"{self.shingle}{self.ngram}-p{self.num_perm}-t{self.threshold:g}-{SCHEME}"


def normalize_for_dedup(text: str) -> str:
    """NFKC (full/half width), lower case, and no whitespace or punctuation."""
    return _STRIP.sub("", unicodedata.normalize("NFKC", text).lower())


def shingles(norm: str, params: DedupParams) -> list[bytes]:
    if params.shingle == "word":
        import jieba  # imported lazily: it builds its dictionary on first use (about a second)

        tokens = [t for t in jieba.lcut(norm) if t.strip()]
    else:
        tokens = list(norm)
    n = params.ngram
    if len(tokens) < n:
        # Too short for one n-gram: the whole text is its single shingle (handled, not dropped).
        return ["".join(tokens).encode("utf-8")]
    return ["".join(tokens[i : i + n]).encode("utf-8") for i in range(len(tokens) - n + 1)]


def signatures(texts: list[str], params: DedupParams) -> list[MinHash]:
    sets = [shingles(normalize_for_dedup(t), params) for t in texts]
    return MinHash.bulk(sets, num_perm=params.num_perm) if sets else []


# datasketch >= 2 names its hashing scheme; stored signatures are only comparable within one scheme,
# so the scheme is part of the stored method string (see DedupParams.method).
_PROBE = MinHash(num_perm=1)
SCHEME, _HASH_DTYPE = _PROBE.scheme, _PROBE.hashvalues.dtype


def signature_bytes(m: MinHash) -> bytes:
    return np.asarray(m.hashvalues, dtype="<u8").tobytes()


def signature_from_bytes(b: bytes, num_perm: int) -> MinHash:
    values = np.frombuffer(b, dtype="<u8")
    return MinHash(num_perm=num_perm, hashvalues=values.astype(_HASH_DTYPE), scheme=SCHEME)


def dedup_batch(
    new: pl.DataFrame, stored: pl.DataFrame, params: DedupParams, run_id: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decide every new query against the stored kept ones and the earlier new ones.

    new:    query_id, text (in processing order)
    stored: query_id, norm_hash, cluster_id, signature (the kept queries of earlier runs)
    Returns (dedup rows for the new queries, signature rows for the new queries).
    """
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    exact: dict[str, tuple[str, str]] = {}  # norm_hash -> (query_id, cluster_id)
    cluster_of: dict[str, str] = {}
    sig_of: dict[str, MinHash] = {}
    for r in stored.iter_rows(named=True):
        sig_of[r["query_id"]] = signature_from_bytes(r["signature"], params.num_perm)
        lsh.insert(r["query_id"], sig_of[r["query_id"]])
        exact.setdefault(r["norm_hash"], (r["query_id"], r["cluster_id"]))
        cluster_of[r["query_id"]] = r["cluster_id"]

    texts = new["text"].to_list()
    ids = new["query_id"].to_list()
    sigs = signatures(texts, params)
    dedup_rows, sig_rows = [], []
    for qid, text, sig in zip(ids, texts, sigs, strict=True):
        norm_hash = content_hash(normalize_for_dedup(text))
        sig_rows.append({"query_id": qid, "method": params.method, "signature": signature_bytes(sig), "run_id": run_id})
        if norm_hash in exact:
            match, cluster = exact[norm_hash]
            dedup_rows.append(_row(qid, norm_hash, cluster, False, "exact", match, params, run_id))
            continue
        candidates = sorted(lsh.query(sig))
        if candidates:
            # the most similar kept candidate is the one this query duplicates
            match = max(candidates, key=lambda c: (sig.jaccard(sig_of[c]), c))
            cluster = cluster_of[match]
            dedup_rows.append(_row(qid, norm_hash, cluster, False, "near", match, params, run_id))
            continue
        lsh.insert(qid, sig)
        sig_of[qid] = sig
        exact[norm_hash] = (qid, qid)
        cluster_of[qid] = qid
        dedup_rows.append(_row(qid, norm_hash, qid, True, "canonical", None, params, run_id))
    return (
        pl.DataFrame(dedup_rows, schema=DEDUP_SCHEMA),
        pl.DataFrame(sig_rows, schema={"query_id": pl.String, "method": pl.String, "signature": pl.Binary,
                                       "run_id": pl.String}),
    )


DEDUP_SCHEMA = {
    "query_id": pl.String, "norm_hash": pl.String, "cluster_id": pl.String, "kept": pl.Boolean,
    "reason": pl.String, "matched_id": pl.String, "method": pl.String, "run_id": pl.String,
}


def _row(qid, norm_hash, cluster, kept, reason, match, params: DedupParams, run_id) -> dict:
    return {"query_id": qid, "norm_hash": norm_hash, "cluster_id": cluster, "kept": kept, "reason": reason,
            "matched_id": match, "method": params.method, "run_id": run_id}
