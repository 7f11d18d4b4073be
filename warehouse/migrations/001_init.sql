-- 001: the fact tables. Facts only: everything derived is a view (warehouse/views/).
-- IDs are content hashes (tasks/core/ids.py), so every insert is idempotent.

CREATE TABLE runs (
    run_id              VARCHAR PRIMARY KEY,
    flow                VARCHAR NOT NULL,
    parent_run_id       VARCHAR,
    prefect_flow_run_id VARCHAR,
    config              JSON,            -- the factory config; holds env var names, never secrets
    code_version        VARCHAR,
    started_at          TIMESTAMP NOT NULL,
    finished_at         TIMESTAMP,
    status              VARCHAR NOT NULL, -- running | completed | failed
    summary             JSON
);

CREATE TABLE queries (
    query_id       VARCHAR PRIMARY KEY,   -- hash of the NFKC/whitespace-normalised text
    text           VARCHAR NOT NULL,
    source         VARCHAR NOT NULL,      -- synthetic | real | translated
    method         VARCHAR NOT NULL,      -- seed | benign | <augmentation method> | import | translate
    parent_id      VARCHAR,               -- the query this one was derived from (augmentation)
    scenario       VARCHAR,
    subcategory    VARCHAR,
    task_type      VARCHAR,
    intended_label VARCHAR,               -- harmful | benign | NULL when unknown
    elements       JSON,
    original_text  VARCHAR,               -- e.g. the English original of a translated query
    provenance     JSON,                  -- file, row, original id for imports
    generator      VARCHAR,               -- model that wrote it
    prompt_version VARCHAR,               -- content hash of the template that produced it
    call_key       VARCHAR,               -- the llm_calls row that produced it
    run_id         VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE dedup (
    query_id   VARCHAR PRIMARY KEY,
    norm_hash  VARCHAR NOT NULL,          -- hash of the dedup-normalised text (exact duplicates)
    cluster_id VARCHAR NOT NULL,          -- the canonical member's query_id
    kept       BOOLEAN NOT NULL,
    reason     VARCHAR NOT NULL,          -- canonical | exact | near
    matched_id VARCHAR,                   -- the query it duplicates (NULL when kept)
    method     VARCHAR NOT NULL,          -- e.g. char5-p128-t0.7
    run_id     VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE minhash_signatures (
    query_id   VARCHAR NOT NULL,
    method     VARCHAR NOT NULL,
    signature  BLOB NOT NULL,             -- num_perm little-endian uint64 hash values
    run_id     VARCHAR NOT NULL,
    PRIMARY KEY (query_id, method)
);

CREATE TABLE responses (
    response_id  VARCHAR PRIMARY KEY,     -- hash of (query_id, responder model, sample_index)
    query_id     VARCHAR NOT NULL,
    responder    VARCHAR NOT NULL,        -- endpoint name
    model        VARCHAR NOT NULL,
    sample_index INTEGER NOT NULL,
    text         VARCHAR,                 -- NULL when the call failed
    status       VARCHAR NOT NULL,        -- ok | failed
    error        VARCHAR,
    call_key     VARCHAR,
    run_id       VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE votes (
    vote_id        VARCHAR PRIMARY KEY,   -- hash of (response_id, judge model)
    response_id    VARCHAR NOT NULL,
    judge          VARCHAR NOT NULL,      -- endpoint name
    model          VARCHAR NOT NULL,
    label          VARCHAR,               -- 安全 | 不安全 | 有争议 | NULL (abstention)
    category       VARCHAR,
    analysis       VARCHAR,
    raw_text       VARCHAR,               -- the judge's output as received (untrusted)
    status         VARCHAR NOT NULL,      -- ok | abstain | failed
    error          VARCHAR,
    prompt_version VARCHAR,
    call_key       VARCHAR,
    run_id         VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE adjudications (
    response_id    VARCHAR PRIMARY KEY,
    adjudicator    VARCHAR NOT NULL,
    model          VARCHAR NOT NULL,
    label          VARCHAR,
    analysis       VARCHAR,
    raw_text       VARCHAR,
    prompt_version VARCHAR,
    call_key       VARCHAR,
    run_id         VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE human_labels (
    response_id VARCHAR NOT NULL,
    label       VARCHAR NOT NULL,
    annotator   VARCHAR,
    note        VARCHAR,
    source_file VARCHAR,
    source_line INTEGER,
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (response_id, run_id)
);

-- The audit log and the cache of every LLM call. One row per (call, run) that went to the network;
-- a cache hit is not a call and adds no row. The cache is: any row of the key with status = 'ok'.
CREATE TABLE llm_calls (
    call_key          VARCHAR NOT NULL,   -- hash of (model, messages, sampling params, template version)
    run_id            VARCHAR NOT NULL,
    endpoint          VARCHAR NOT NULL,
    model             VARCHAR NOT NULL,
    template_version  VARCHAR,
    request           JSON,               -- messages and params; never headers or keys
    response_text     VARCHAR,
    status            VARCHAR NOT NULL,   -- ok | failed
    error             VARCHAR,
    attempts          INTEGER NOT NULL,   -- 1 + retries
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    latency_ms        DOUBLE,             -- of the final attempt
    created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (call_key, run_id)
);

CREATE TABLE benchmarks (
    benchmark         VARCHAR NOT NULL,
    item_id           VARCHAR NOT NULL,
    source            VARCHAR,
    category_name     VARCHAR,
    sub_category_name VARCHAR,
    question          VARCHAR NOT NULL,
    response          VARCHAR,
    label             VARCHAR,
    "analyze"         VARCHAR,         -- quoted: a reserved word, kept for the Libra-Test field name
    run_id            VARCHAR NOT NULL,
    PRIMARY KEY (benchmark, item_id)
);

CREATE TABLE predictions (
    guard     VARCHAR NOT NULL,
    benchmark VARCHAR NOT NULL,
    item_id   VARCHAR NOT NULL,
    raw_text  VARCHAR,
    label     VARCHAR,                    -- parsed; NULL = unparseable (counts as wrong)
    run_id    VARCHAR NOT NULL,
    PRIMARY KEY (guard, benchmark, item_id)
);

CREATE TABLE training_runs (
    training_run_id        VARCHAR PRIMARY KEY,
    stage                  VARCHAR NOT NULL,
    base_model             VARCHAR NOT NULL,
    parent_training_run_id VARCHAR,
    export_manifest_hash   VARCHAR,
    hyperparameters        JSON,
    loss_curve             JSON,
    output_path            VARCHAR,
    duration_s             DOUBLE,
    run_id                 VARCHAR NOT NULL,
    created_at             TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Split membership is assigned once per query and never moves: a query that was held out for
-- evaluation can never drift into a training split in a later run.
CREATE TABLE splits (
    query_id   VARCHAR PRIMARY KEY,
    split      VARCHAR NOT NULL,          -- pretrain | finetune | eval
    seed       INTEGER NOT NULL,
    run_id     VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE exports (
    export_id  VARCHAR PRIMARY KEY,       -- hash of the manifest
    split      VARCHAR NOT NULL,
    format     VARCHAR NOT NULL,
    path       VARCHAR NOT NULL,
    n_rows     INTEGER NOT NULL,
    sha256     VARCHAR NOT NULL,
    manifest   JSON,
    run_id     VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Small key/value policy knobs that views read (e.g. vote thresholds), written by flows from the config.
CREATE TABLE settings (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
