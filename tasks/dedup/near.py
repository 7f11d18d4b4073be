"""Step 4: exact and near-duplicate removal (MinHash LSH), incremental across runs; and the matching that
benchmark decontamination shares with it.

Stages, each a plain function over numpy arrays or polars frames, so each one shards by batch:

    normalise -> shingle hashes -> MinHash signatures -> LSH band buckets -> candidate pairs
    -> verified similarity (true Jaccard, or the MinHash estimate) -> greedy decisions

The rule (greedy, first kept text wins; not union-find). Texts are decided one after another in a stable
order: everything stored first (those decisions are final), then the batch by (seq, item_id) — seq is the
creation time in the warehouse, the line number in a file. A text is

- `exact` when its normalised text equals an earlier text's: it inherits that text's cluster (the kept
  text it or its first copy belongs to); matched_id names the first item with its text;
- `near` when some *kept* text has similarity >= threshold with it (verified, not only an LSH hit): it
  is dropped for the earliest such text (cluster_id = matched_id = that text);
- kept (`canonical`, cluster_id = itself) otherwise.

So a text is dropped only for a kept text it is really near, and the kept set has no pair at or above
the threshold (bar LSH misses: P(candidate | s = threshold) >= 0.999). Nothing chains: A~B and B~C put
C with A only if C~A itself. `similarity` stores each dropped text's similarity to its kept text.
Decisions are never revised: a new text is compared with kept texts only and changes no stored row, so
deciding batch B after stored A equals deciding A+B at once whenever B's items sort after A's (the
stage decides pending queries in creation order); a query created earlier but decided later is decided
after the stored ones.

Cost, per batch of n texts with b bands: sketching is vectorised numpy (O(shingles x num_perm));
matching against the stored kept texts is one SQL join of n x b bucket keys with the stored buckets of
kept texts, done in DuckDB per chunk of MATCH_CHUNK texts; within the batch one pass keeps a dict from
bucket key to the batch's kept texts (O(n x b) lookups). Each candidate pair costs one signature
comparison (vectorised) and, when its estimate is within VERIFY_MARGIN of the threshold, one exact set
Jaccard; a text's candidates are checked earliest first and its first verified match ends the search. Memory is O(n x b + candidates of one chunk), independent of how much is stored: stored
buckets stay in DuckDB, stored decisions are read only for exact matches and candidates.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl
from datasketch import MinHash

# Whitespace, punctuation and symbols carry no meaning for duplicate detection: “怎么做？” == “怎么做”.
_STRIP = re.compile(r"[\s\W_]+", re.UNICODE)

# Candidate pairs are verified afterwards, so LSH false positives cost only time while false negatives
# are lost pairs, and a lost pair of kept texts breaks the rule "no kept pair at or above the threshold"
# (at 0.98 a templated corpus of 6k texts kept a pair at 0.609: bench/dedup_scale.py). The bands are
# chosen for recall, P(candidate | s = threshold) >= this: at threshold 0.6, 42 bands x 3 rows,
# P(0.6) = 0.99996 (32 x 4 would give 0.988), at the price of more candidates below it (P(0.3) = 0.68).
LSH_RECALL_AT_THRESHOLD = 0.999
# True Jaccard is computed only for candidates whose MinHash estimate is at least threshold - margin:
# with 128 permutations the estimate's standard error is <= 0.044, so 0.2 is more than 4.5 sigma.
VERIFY_MARGIN = 0.2

# datasketch >= 2 names its permutation scheme; signatures are comparable only within one scheme and
# one base hash, so both are part of the stored method string (DedupParams.method).
SCHEME = MinHash(num_perm=1).scheme
if SCHEME != "affine32":  # the vectorised path below implements datasketch's affine32 permutations
    raise ImportError(f"datasketch's default MinHash scheme is {SCHEME!r}; libra implements 'affine32'")
BASE_HASH = "rk64"  # the shingle hash below: polynomial over code points / token ids, fmix64 finaliser


def lsh_bands(threshold: float, num_perm: int, min_recall: float = LSH_RECALL_AT_THRESHOLD) -> tuple[int, int]:
    """(b bands, r rows). A pair of Jaccard similarity s shares a bucket in at least one band with
    probability 1 - (1 - s^r)^b. This is the largest r (fewest spurious candidates) whose probability at
    s = threshold reaches `min_recall`, with b = num_perm // r. Threshold 0.6 with 128 permutations:
    42 bands x 3 rows; P(0.6) = 0.99996, P(0.4) = 0.93, P(0.2) = 0.29, P(0.1) = 0.041."""
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b >= min_recall:
            return b, r
    return num_perm, 1


@dataclass(frozen=True)
class DedupParams:
    """What makes two texts near-duplicates. Shingles: `char` n-grams of the normalised text, or `word`
    n-grams of its jieba tokens; a text with fewer than n characters (tokens) has one shingle, all of it.
    Near-duplicates: Jaccard similarity of the shingle sets >= threshold, checked on the true sets
    (`verify_jaccard`) or on the MinHash estimate (standard error sqrt(s(1-s)/num_perm): 0.04 at 0.7)."""

    # defaults chosen by bench/dedup.py on real queries; kept equal to tasks/core/config.py: Dedup (tested)
    shingle: Literal["char", "word"] = "char"
    ngram: int = 2
    num_perm: int = 128
    threshold: float = 0.6
    verify_jaccard: bool = True
    # Processes that tokenise with jieba (word shingles), used once a batch is large enough to pay.
    workers: int = 1

    def __post_init__(self) -> None:
        if self.shingle not in ("char", "word"):
            raise ValueError(f"shingle must be 'char' or 'word', not {self.shingle!r}")
        if not (1 <= self.ngram <= 20 and 16 <= self.num_perm <= 1024 and 0 < self.threshold < 1):
            raise ValueError(f"dedup parameters out of range: {self}")

    @cached_property
    def bands(self) -> tuple[int, int]:
        return lsh_bands(self.threshold, self.num_perm)

    @property
    def method(self) -> str:
        """Names stored signatures and buckets: everything that changes them is in it (the threshold
        only through the bands it implies)."""
        b, r = self.bands
        return f"{self.shingle}{self.ngram}-p{self.num_perm}-b{b}r{r}-{SCHEME}-{BASE_HASH}"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DedupParams:
        """From the factory config's `dedup` section (tasks/core/config.py: Dedup) or stored settings."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def normalize_for_dedup(text: str) -> str:
    """NFKC (full-width -> half-width, compatibility forms), case folding, no whitespace/punctuation."""
    return _STRIP.sub("", unicodedata.normalize("NFKC", text).casefold())


def norm_hash(norm: str) -> str:
    """The exact-duplicate key: a 64-bit hash of the normalised text."""
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=8).hexdigest()


# -- shingle hashes and signatures (vectorised over a whole batch) ------------------------------------

_U64 = np.uint64
_POLY = _U64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the polynomial hash
_SHINGLES_PER_CHUNK = 1 << 13  # shingles permuted at once: a (num_perm x chunk) uint32 matrix
_PAIRS_PER_CHUNK = 1 << 16  # candidate pairs whose signatures are compared at once (2 x 32 MiB at 128)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit over the output."""
    h = (h ^ (h >> _U64(33))) * _U64(0xFF51AFD7ED558CCD)
    h = (h ^ (h >> _U64(33))) * _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """datasketch's affine32 pre-mix (MurmurHash3 fmix32) of the 32-bit input hashes."""
    h = (h ^ (h >> np.uint32(16))) * np.uint32(0x85EBCA6B)
    h = (h ^ (h >> np.uint32(13))) * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def ngram_hashes(codes: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every n-gram of every document, all documents at once.

    codes: the documents' symbols (code points or token ids) concatenated; lengths[i]: document i's
    count. A document shorter than n has exactly one shingle, all of it (the empty text included).
    Returns (hashes, offsets): document i's shingles are hashes[offsets[i]:offsets[i+1]], never empty."""
    lengths = lengths.astype(np.int64)
    doc_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    counts = np.where(lengths >= n, lengths - n + 1, 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    starts = np.repeat(doc_starts - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
    width = np.repeat(np.minimum(lengths, n), counts).astype(np.uint64)
    padded = np.concatenate([codes.astype(np.uint64) + _U64(1), np.zeros(n, dtype=np.uint64)])
    h = np.zeros(offsets[-1], dtype=np.uint64)
    for j in range(n):
        h = np.where(_U64(j) < width, h * _POLY + padded[starts + j], h)
    return _fmix64(h ^ width), offsets


_token_ids: dict[str, int] = {}


def _token_id(token: str) -> int:
    """A stable 64-bit id per jieba token (cached: tokens repeat across documents)."""
    tid = _token_ids.get(token)
    if tid is None:
        if len(_token_ids) >= 1 << 20:  # bounded memory in long runs
            _token_ids.clear()
        tid = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
        _token_ids[token] = tid
    return tid


def _jieba_tokens(norms: Sequence[str]) -> list[list[str]]:
    with warnings.catch_warnings():  # jieba imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        import jieba  # lazily: it loads its dictionary on first use (about a second)

    jieba.setLogLevel(60)
    return [jieba.lcut(t, HMM=True) for t in norms]


class Tokenizer:
    """jieba tokenisation, spread over `workers` processes once a batch is large enough to pay for them
    (each process loads the dictionary, about a second)."""

    MIN_PARALLEL_DOCS = 8000

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def tokens(self, norms: Sequence[str]) -> list[list[str]]:
        if self.workers == 1 or len(norms) < self.MIN_PARALLEL_DOCS:
            return _jieba_tokens(norms)
        if self._pool is None:
            import multiprocessing

            # spawn, not fork: flows run threads, and a forked child can inherit a held lock
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        size = -(-len(norms) // (self.workers * 4))
        chunks = [norms[i : i + size] for i in range(0, len(norms), size)]
        return [toks for part in self._pool.map(_jieba_tokens, chunks) for toks in part]

    def __getstate__(self) -> dict[str, Any]:
        # a batch task sent to a Ray worker takes the settings, not the pool: the worker makes its own
        return {"workers": self.workers, "_pool": None}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@contextmanager
def tokenizer(params: DedupParams) -> Iterator[Tokenizer]:
    tok = Tokenizer(params.workers if params.shingle == "word" else 1)
    try:
        yield tok
    finally:
        tok.close()


def shingle_hashes(norms: Sequence[str], params: DedupParams, tok: Tokenizer | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, offsets) of the shingles of normalised texts (see ngram_hashes)."""
    if params.shingle == "char":
        codes = np.frombuffer("".join(norms).encode("utf-32-le"), dtype="<u4")
        lengths = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
    else:
        token_lists = (tok or Tokenizer()).tokens(norms)
        codes = np.fromiter((_token_id(t) for toks in token_lists for t in toks), dtype=np.uint64)
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(norms))
    return ngram_hashes(codes, lengths, params.ngram)


def base_hash32(shingle_hashes: np.ndarray) -> np.ndarray:
    """The 32-bit value datasketch's affine32 scheme permutes: the upper half of the shingle hash.
    MinHash(hashfunc=<this>) fed the same shingles yields the same signature (tests check it)."""
    return (shingle_hashes >> _U64(32)).astype(np.uint32)


@cache
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = MinHash(num_perm=num_perm).permutations  # datasketch's own (seed 1)
    return a.astype(np.uint32), b.astype(np.uint32)


def minhash_signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int) -> np.ndarray:
    """(documents x num_perm) uint32 signatures: min over each document's shingles of a_k * h + b_k
    (mod 2^32) — datasketch's affine32 MinHash, computed for many documents at once."""
    a, b = _permutations(num_perm)
    a, b = a[:, None], b[:, None]
    hv = _fmix32(base_hash32(hashes))
    n = len(offsets) - 1
    out = np.empty((num_perm, n), dtype=np.uint32)
    doc = 0
    while doc < n:  # whole documents per chunk: the (num_perm x chunk) matrix stays in cache
        end = int(np.searchsorted(offsets, offsets[doc] + _SHINGLES_PER_CHUNK, side="right")) - 1
        end = min(max(end, doc + 1), n)
        lo, hi = offsets[doc], offsets[end]
        permuted = a * hv[None, lo:hi]
        permuted += b
        out[:, doc:end] = np.minimum.reduceat(permuted, offsets[doc:end] - lo, axis=1)
        doc = end
    return np.ascontiguousarray(out.T)


def band_buckets(signatures: np.ndarray, bands: tuple[int, int]) -> np.ndarray:
    """(documents x b) 64-bit bucket keys, one per band of r signature rows; the band number is part of
    the key, so one key column identifies (band, rows)."""
    b, r = bands
    rows = signatures[:, : b * r].reshape(len(signatures), b, r).astype(np.uint64)
    key = np.broadcast_to(np.arange(1, b + 1, dtype=np.uint64), (len(signatures), b)).copy()
    for j in range(r):
        key = key * _POLY + rows[:, :, j] + _U64(1)
    return _fmix64(key)


def signature_bytes(signatures: np.ndarray) -> list[bytes]:
    """Storage form of signature rows: num_perm little-endian uint32 values."""
    return [row.tobytes() for row in signatures.astype("<u4", copy=False)]


def signatures_from_bytes(blobs: Sequence[bytes], num_perm: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, num_perm), dtype=np.uint32)
    return np.frombuffer(b"".join(blobs), dtype="<u4").reshape(len(blobs), num_perm).astype(np.uint32)


def as_minhash(signature: np.ndarray) -> MinHash:
    """A stored signature as a datasketch MinHash (e.g. for MinHashLSH or LeanMinHash)."""
    return MinHash(num_perm=len(signature), hashvalues=signature, scheme=SCHEME)


@dataclass
class Sketch:
    """Everything dedup and decontamination need of a batch of texts, computed once."""

    norm_hashes: list[str]
    hashes: np.ndarray       # shingle hashes of all documents, concatenated
    offsets: np.ndarray      # document i: hashes[offsets[i]:offsets[i+1]]
    signatures: np.ndarray   # (n, num_perm) uint32
    buckets: np.ndarray      # (n, bands) uint64
    _sets: dict[int, frozenset[int]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.norm_hashes)

    def shingle_set(self, i: int) -> frozenset[int]:
        s = self._sets.get(i)
        if s is None:
            s = self._sets[i] = frozenset(self.hashes[self.offsets[i] : self.offsets[i + 1]].tolist())
        return s


def sketch_texts(texts: Sequence[str], params: DedupParams, tok: Tokenizer | None = None) -> Sketch:
    norms = [normalize_for_dedup(t) for t in texts]
    hashes, offsets = shingle_hashes(norms, params, tok)
    sigs = minhash_signatures(hashes, offsets, params.num_perm)
    return Sketch([norm_hash(n) for n in norms], hashes, offsets, sigs, band_buckets(sigs, params.bands))


def similarities(left: Sketch, li: np.ndarray, right: Sketch, ri: np.ndarray, params: DedupParams) -> np.ndarray:
    """Jaccard similarity of pairs (left[li[k]], right[ri[k]]): the MinHash estimate (share of equal
    signature values) and, when params.verify_jaccard, the true similarity of the shingle sets for the
    pairs whose estimate is within VERIFY_MARGIN of the threshold or above (the others keep their
    estimate: they are below the threshold either way, bar a 4.6-sigma estimation error)."""
    est = _estimates(left, li, right, ri)
    if not params.verify_jaccard:
        return est
    for k in np.flatnonzero(est >= params.threshold - VERIFY_MARGIN).tolist():
        a, b = left.shingle_set(int(li[k])), right.shingle_set(int(ri[k]))
        inter = len(a & b)
        est[k] = inter / (len(a) + len(b) - inter)
    return est


# -- matching a batch against an index -------------------------------------------------------------


class MatchIndex(Protocol):
    """Stored texts a batch is matched against (earlier queries, benchmark questions)."""

    def hash_matches(self, hashes: pl.DataFrame) -> pl.DataFrame:
        """(pos, norm_hash) -> (pos, ref_id, ...): stored texts with the same normalised text."""

    def bucket_matches(self, buckets: pl.DataFrame) -> pl.DataFrame:
        """(pos, bucket) -> (pos, ref_id): stored texts sharing an LSH bucket (distinct pairs)."""

    def references(self, ref_ids: pl.DataFrame) -> pl.DataFrame:
        """(ref_id) -> (ref_id, text, signature, ...extra columns passed through to the matches)."""


MATCH_SCHEMA = {"pos": pl.Int64, "ref_id": pl.String, "reason": pl.String, "similarity": pl.Float64}
NEAR_SCHEMA = {"pos": pl.Int64, "ref_id": pl.String, "similarity": pl.Float64}


def bucket_frame(sketch: Sketch, positions: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"pos": np.repeat(positions.astype(np.int64), sketch.buckets.shape[1]),
                         "bucket": sketch.buckets[positions].ravel()})


def verified_near(sketch: Sketch, candidates: pl.DataFrame, refs: pl.DataFrame, params: DedupParams,
                  tok: Tokenizer | None = None) -> pl.DataFrame:
    """The LSH candidate pairs (pos, ref_id) whose similarity is >= threshold: (pos, ref_id, similarity).
    refs: ref_id, text, signature of every candidate ref_id (the text when params.verify_jaccard)."""
    near_refs = refs.join(candidates.select("ref_id").unique(), on="ref_id").with_row_index("ref_pos")
    near = candidates.join(near_refs.select("ref_id", "ref_pos"), on="ref_id")
    if near.is_empty():
        return pl.DataFrame(schema=NEAR_SCHEMA)
    if params.verify_jaccard:
        ref_sketch = sketch_texts(near_refs["text"].to_list(), params, tok)
    else:
        sigs = signatures_from_bytes(near_refs["signature"].to_list(), params.num_perm)
        ref_sketch = Sketch([], np.zeros(0, np.uint64), np.zeros(1, np.int64), sigs, np.zeros((0, 0), np.uint64))
    sims = similarities(sketch, near["pos"].to_numpy(), ref_sketch, near["ref_pos"].to_numpy(), params)
    return (near.with_columns(pl.Series("similarity", sims)).filter(pl.col("similarity") >= params.threshold)
            .select(list(NEAR_SCHEMA)).cast(NEAR_SCHEMA))  # type: ignore[arg-type]


def match_references(sketch: Sketch, positions: np.ndarray, index: MatchIndex, params: DedupParams,
                     tok: Tokenizer | None = None) -> pl.DataFrame:
    """Stored texts that the batch texts at `positions` duplicate: exact (same normalised text,
    similarity 1) or, for texts without an exact match, near (an LSH candidate whose verified Jaccard
    similarity >= threshold). Columns: pos, ref_id, reason, similarity, and the index's extra columns."""
    positions = np.asarray(positions, dtype=np.int64)
    exact = index.hash_matches(_hash_frame(sketch, positions)).select("pos", "ref_id").unique()
    rest = np.setdiff1d(positions, exact["pos"].to_numpy())
    candidates = index.bucket_matches(bucket_frame(sketch, rest)).select("pos", "ref_id").unique()
    ref_ids = pl.concat([exact["ref_id"], candidates["ref_id"]]).unique().to_frame("ref_id")
    refs = index.references(ref_ids)
    # only LSH candidates are compared (an exact match's signature may not even be stored)
    near = verified_near(sketch, candidates, refs, params, tok)
    out = pl.concat([
        exact.with_columns(reason=pl.lit("exact"), similarity=pl.lit(1.0)),
        near.select("pos", "ref_id", reason=pl.lit("near"), similarity="similarity"),
    ]).cast(MATCH_SCHEMA)  # type: ignore[arg-type]
    return out.join(refs.drop("text", "signature"), on="ref_id").sort("pos", "ref_id")


def _hash_frame(sketch: Sketch, positions: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"pos": positions, "norm_hash": [sketch.norm_hashes[p] for p in positions.tolist()]},
                        schema={"pos": pl.Int64, "norm_hash": pl.String})


# -- decisions: greedy, first kept text wins ----------------------------------------------------------


class DedupIndex(MatchIndex, Protocol):
    """The decided items a batch is deduplicated against (the warehouse, or MemoryIndex):

    hash_matches -> pos, ref_id (the first item with that normalised text), cluster_id, similarity
        (its decision, which an exact duplicate inherits);
    bucket_matches -> pos, ref_id of *kept* items only (dropped ones are never matched against);
    references -> ref_id, text, signature, seq."""


DECISION_SCHEMA = {"item_id": pl.String, "norm_hash": pl.String, "cluster_id": pl.String, "kept": pl.Boolean,
                   "reason": pl.String, "matched_id": pl.String, "similarity": pl.Float64}
MEMBER_SCHEMA = {**DECISION_SCHEMA, "seq": pl.Int64}
# Batch texts matched against the stored kept ones per chunk: bounds the candidate frame (texts x their
# candidates) whatever the batch size.
MATCH_CHUNK = 1024


@dataclass
class DedupResult:
    decisions: pl.DataFrame  # one row per batch item (DECISION_SCHEMA), in batch order
    new_texts: np.ndarray    # batch positions of texts not stored before (one per text): index these
    kept_texts: np.ndarray   # the new texts that were kept (the only ones later texts are matched against)


def _first_stored_near(sketch: Sketch, positions: np.ndarray, index: DedupIndex, params: DedupParams,
                       tok: Tokenizer | None) -> pl.DataFrame:
    """For each text at `positions` near some stored kept text: the earliest such text (seq, ref_id).
    Columns: pos, ref_id, similarity. Done in chunks of MATCH_CHUNK texts; each text's candidates are
    checked earliest first, and the first verified one ends its search."""
    parts = [pl.DataFrame(schema=NEAR_SCHEMA)]
    for lo in range(0, len(positions), MATCH_CHUNK):
        chunk = positions[lo : lo + MATCH_CHUNK]
        candidates = index.bucket_matches(bucket_frame(sketch, chunk)).select("pos", "ref_id").unique()
        if candidates.is_empty():
            continue
        refs = index.references(candidates.select("ref_id").unique()).with_row_index("ref_pos")
        if params.verify_jaccard:
            ref_sketch = sketch_texts(refs["text"].to_list(), params, tok)
        else:
            sigs = signatures_from_bytes(refs["signature"].to_list(), params.num_perm)
            ref_sketch = Sketch([], np.zeros(0, np.uint64), np.zeros(1, np.int64), sigs, np.zeros((0, 0), np.uint64))
        pairs = (candidates.join(refs.select("ref_id", "ref_pos", "seq"), on="ref_id")
                 .sort("pos", "seq", "ref_id"))
        pos, ref_pos = pairs["pos"].to_numpy(), pairs["ref_pos"].cast(pl.Int64).to_numpy()
        est = _estimates(sketch, pos, ref_sketch, ref_pos)
        found: dict[int, tuple[int, float]] = {}
        for k in np.flatnonzero(est >= params.threshold - (VERIFY_MARGIN if params.verify_jaccard else 0)).tolist():
            p = int(pos[k])
            if p in found:
                continue
            if params.verify_jaccard:
                a, b = sketch.shingle_set(p), ref_sketch.shingle_set(int(ref_pos[k]))
                inter = len(a & b)
                sim = inter / (len(a) + len(b) - inter)
            else:
                sim = float(est[k])
            if sim >= params.threshold:
                found[p] = (int(ref_pos[k]), sim)
        ref_ids = refs["ref_id"].to_list()
        parts.append(pl.DataFrame([(p, ref_ids[r], sim) for p, (r, sim) in found.items()], schema=NEAR_SCHEMA,
                                  orient="row"))
    return pl.concat(parts)


def _estimates(left: Sketch, li: np.ndarray, right: Sketch, ri: np.ndarray) -> np.ndarray:
    """MinHash estimates of the Jaccard similarity of pairs (left[li[k]], right[ri[k]])."""
    est = np.empty(len(li), dtype=np.float64)
    num_perm = left.signatures.shape[1]
    for lo in range(0, len(li), _PAIRS_PER_CHUNK):  # bounded (pairs x num_perm) temporaries
        hi = lo + _PAIRS_PER_CHUNK
        est[lo:hi] = np.count_nonzero(left.signatures[li[lo:hi]] == right.signatures[ri[lo:hi]], axis=1) / num_perm
    return est


def _greedy_within(sketch: Sketch, order: list[int], params: DedupParams) -> dict[int, tuple[int, float]]:
    """One pass over batch texts in decision order: a text near an earlier *kept* one is dropped for the
    earliest such text, any other is kept. The kept texts' buckets live in a dict from bucket key to
    their ranks, so a text is compared only with the kept texts sharing one of its b buckets, earliest
    first, and the first verified one ends the search.
    Returns {dropped position: (the kept position, similarity)}; the positions not in it are kept."""
    positions = np.asarray(order, dtype=np.int64)
    sigs = sketch.signatures
    kept_in_bucket: dict[int, list[int]] = {}
    dropped: dict[int, tuple[int, float]] = {}
    for rank, p in enumerate(order):
        keys = sketch.buckets[p].tolist()
        seen: set[int] = set()
        for key in keys:
            ranks = kept_in_bucket.get(key)
            if ranks:
                seen.update(ranks)
        if seen:
            cands = positions[np.fromiter(sorted(seen), dtype=np.int64, count=len(seen))]
            hit = _first_near(sketch, p, cands, np.count_nonzero(sigs[cands] == sigs[p], axis=1) / sigs.shape[1],
                              params)
            if hit is not None:
                dropped[p] = hit
                continue
        for key in keys:
            kept_in_bucket.setdefault(key, []).append(rank)
    return dropped


def _first_near(sketch: Sketch, p: int, cands: np.ndarray, estimates: np.ndarray, params: DedupParams
                ) -> tuple[int, float] | None:
    """The first of `cands` (in their order) whose similarity with text p is >= threshold, as in
    similarities(): the MinHash estimate, or the true Jaccard for estimates within VERIFY_MARGIN."""
    if not params.verify_jaccard:
        hits = np.flatnonzero(estimates >= params.threshold)
        return (int(cands[hits[0]]), float(estimates[hits[0]])) if len(hits) else None
    a = sketch.shingle_set(p)
    for k in np.flatnonzero(estimates >= params.threshold - VERIFY_MARGIN).tolist():
        b = sketch.shingle_set(int(cands[k]))
        inter = len(a & b)
        sim = inter / (len(a) + len(b) - inter)
        if sim >= params.threshold:
            return int(cands[k]), sim
    return None


def dedup_batch(new: pl.DataFrame, sketch: Sketch, index: DedupIndex, params: DedupParams,
                tok: Tokenizer | None = None) -> DedupResult:
    """Decide every item of a batch against the index and each other (the rule: module docstring).

    new: item_id, text, seq (the decision order: earliest first); sketch: sketch_texts(new["text"]).
    Items must not be in the index already; stored decisions are final and never read back in bulk."""
    n = new.height
    if n == 0:
        none = np.zeros(0, dtype=np.int64)
        return DedupResult(pl.DataFrame(schema=DECISION_SCHEMA), none, none)
    ids = new["item_id"].to_list()
    items = pl.DataFrame({"pos": np.arange(n, dtype=np.int64), "item_id": ids, "seq": new["seq"],
                          "norm_hash": sketch.norm_hashes})
    ordered = items.sort("seq", "item_id")
    # one representative per normalised text in the batch (its first item); the others are exact copies
    reps = ordered.unique("norm_hash", keep="first", maintain_order=True)
    rep_pos = reps["pos"].to_numpy()
    stored_exact = index.hash_matches(_hash_frame(sketch, rep_pos))
    new_texts = rep_pos[~np.isin(rep_pos, stored_exact["pos"].to_numpy())]  # in decision order
    stored_near = _first_stored_near(sketch, new_texts, index, params, tok)
    open_texts = new_texts[~np.isin(new_texts, stored_near["pos"].to_numpy())]
    within = _greedy_within(sketch, open_texts.tolist(), params)

    # each representative's decision: (cluster_id, kept, reason, matched_id, similarity)
    decision: dict[int, tuple[str, bool, str, str | None, float | None]] = {}
    for pos, ref, cluster, sim in stored_exact.select("pos", "ref_id", "cluster_id", "similarity").iter_rows():
        decision[pos] = (cluster, False, "exact", ref, sim)
    for pos, ref, sim in stored_near.iter_rows():
        decision[pos] = (ref, False, "near", ref, sim)
    for pos in open_texts.tolist():
        if pos in within:
            kept_pos, sim = within[pos]
            decision[pos] = (ids[kept_pos], False, "near", ids[kept_pos], sim)
        else:
            decision[pos] = (ids[pos], True, "canonical", None, None)
    rep_of = items.join(reps.select("norm_hash", rep="pos"), on="norm_hash").sort("pos")["rep"].to_list()
    rows = []
    for pos, rep in enumerate(rep_of):
        if pos == rep:
            cluster, kept, reason, matched, sim = decision[pos]
        else:  # an exact copy of an earlier batch item: its cluster, its first copy, its similarity
            cluster, rep_kept, rep_reason, rep_matched, sim = decision[rep]
            first = rep_matched if rep_reason == "exact" else ids[rep]  # the rep may copy a stored text
            kept, reason, matched, sim = False, "exact", first, 1.0 if rep_kept else sim
        rows.append((ids[pos], sketch.norm_hashes[pos], cluster, kept, reason, matched, sim))
    decisions = pl.DataFrame(rows, schema=DECISION_SCHEMA, orient="row")
    kept_texts = np.asarray([p for p in new_texts.tolist() if decision[p][1]], dtype=np.int64)
    return DedupResult(decisions, new_texts, kept_texts)


# -- an index in memory: `libra dedup FILE`, tests, the benchmark -----------------------------------


class MemoryIndex:
    """Everything decided so far, in polars frames (a DedupIndex). Only the kept texts' text, signature
    and buckets are kept: they are all later texts are compared with."""

    def __init__(self, params: DedupParams):
        self.params = params
        self.items = pl.DataFrame(schema=MEMBER_SCHEMA)
        self._texts = pl.DataFrame(schema={"norm_hash": pl.String, "ref_id": pl.String, "cluster_id": pl.String,
                                           "similarity": pl.Float64})  # first item per normalised text
        self._refs = pl.DataFrame(schema={"ref_id": pl.String, "text": pl.String, "signature": pl.Binary,
                                          "seq": pl.Int64})
        self._buckets: list[pl.DataFrame] = []

    def hash_matches(self, hashes: pl.DataFrame) -> pl.DataFrame:
        return hashes.join(self._texts, on="norm_hash").select("pos", "ref_id", "cluster_id", "similarity")

    def bucket_matches(self, buckets: pl.DataFrame) -> pl.DataFrame:
        if not self._buckets or buckets.is_empty():
            return pl.DataFrame(schema={"pos": pl.Int64, "ref_id": pl.String})
        stored = pl.concat(self._buckets, rechunk=False)
        return buckets.join(stored, on="bucket").select("pos", "ref_id").unique()

    def references(self, ref_ids: pl.DataFrame) -> pl.DataFrame:
        return self._refs.join(ref_ids, on="ref_id")

    def add(self, new: pl.DataFrame, sketch: Sketch, result: DedupResult) -> None:
        """Store a decided batch: its decisions, its new texts, and text, signature and buckets of the
        kept ones."""
        decided = result.decisions.with_columns(seq=new["seq"])
        self.items = pl.concat([self.items, decided.select(list(MEMBER_SCHEMA))])
        first = decided[result.new_texts.tolist()]
        self._texts = pl.concat([self._texts, first.select(
            "norm_hash", ref_id="item_id", cluster_id="cluster_id",
            similarity=pl.when("kept").then(1.0).otherwise("similarity"))])
        kept = result.kept_texts
        if not len(kept):
            return
        self._refs = pl.concat([self._refs, new[kept.tolist()].select(
            ref_id="item_id", text="text",
            signature=pl.Series(signature_bytes(sketch.signatures[kept]), dtype=pl.Binary), seq="seq")])
        ref_of = pl.DataFrame({"pos": kept, "ref_id": new["item_id"].gather(kept)})
        self._buckets.append(bucket_frame(sketch, kept).join(ref_of, on="pos").select("bucket", "ref_id"))


def dedup_stream(items: Iterable[tuple[str, str]], params: DedupParams, batch_size: int = 10_000) -> pl.DataFrame:
    """Deduplicate (item_id, text) pairs in order, batch by batch, the way the stage does against the
    warehouse. Returns item_id, cluster_id, kept, reason, matched_id, similarity in input order."""
    index = MemoryIndex(params)
    seq = 0
    with tokenizer(params) as tok:
        for chunk in _chunks(items, batch_size):
            new = pl.DataFrame({"item_id": [i for i, _ in chunk], "text": [t for _, t in chunk],
                                "seq": range(seq, seq + len(chunk))},
                               schema={"item_id": pl.String, "text": pl.String, "seq": pl.Int64})
            seq += len(chunk)
            sketch = sketch_texts(new["text"].to_list(), params, tok)
            index.add(new, sketch, dedup_batch(new, sketch, index, params, tok))
    return index.items.sort("seq").select("item_id", "cluster_id", "kept", "reason", "matched_id", "similarity")


def _chunks(items: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
