-- 005: what incremental dedup and benchmark decontamination keep between runs (tasks/dedup/store.py).
-- `method` names the shingling and MinHash/LSH parameters (tasks/dedup/near.py: DedupParams.method); rows of
-- another method are ignored, and a run under a new method sketches the stored texts again.

-- LSH buckets of the stored queries: one row per band for one query per distinct normalised text (its
-- exact duplicates share its signature). Append-only: a query's text is sketched once per method.
-- No primary key: the table is only ever joined on (method, bucket), and a key index would cost memory.
CREATE TABLE minhash_buckets (
    method   VARCHAR NOT NULL,
    bucket   UBIGINT NOT NULL,            -- hash of (band number, the band's signature values)
    query_id VARCHAR NOT NULL
);

-- Benchmark questions, sketched the same way: every registered item, per method.
CREATE TABLE benchmark_sketches (
    benchmark VARCHAR NOT NULL,
    item_id   VARCHAR NOT NULL,
    method    VARCHAR NOT NULL,
    norm_hash VARCHAR NOT NULL,           -- hash of the dedup-normalised question (exact matches)
    signature BLOB NOT NULL,              -- num_perm little-endian uint32 MinHash values
    run_id    VARCHAR NOT NULL,
    PRIMARY KEY (benchmark, item_id, method)
);

CREATE TABLE benchmark_buckets (
    method    VARCHAR NOT NULL,
    bucket    UBIGINT NOT NULL,
    benchmark VARCHAR NOT NULL,
    item_id   VARCHAR NOT NULL
);
