-- 002: benchmark leakage. A query that is an exact or near duplicate of a registered benchmark
-- question is recorded here (by the dedup stage) and excluded from every training split.
CREATE TABLE decontamination (
    query_id   VARCHAR NOT NULL,
    benchmark  VARCHAR NOT NULL,
    item_id    VARCHAR NOT NULL,
    reason     VARCHAR NOT NULL,          -- exact | near
    similarity DOUBLE,                    -- estimated Jaccard for near matches
    run_id     VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (query_id, benchmark, item_id)
);
