-- 003: stage-1 synthesis facts: the element library, every generation call with its rejections, the
-- per-cell targets the last synthesis run planned for, and translations of English safety data.

-- Harmful behaviours and concrete events per subcategory (recipe step 1), combined into synthesis calls.
CREATE TABLE elements (
    element_id     VARCHAR PRIMARY KEY,   -- hash of (scenario, subcategory, kind, normalised text)
    scenario       VARCHAR NOT NULL,
    subcategory    VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,      -- behaviour | event
    text           VARCHAR NOT NULL,
    prompt_version VARCHAR NOT NULL,      -- template that produced it (name@content hash)
    generator      VARCHAR NOT NULL,      -- model that wrote it
    call_key       VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One row per generation request a run used (sent, or answered from the cache): what it asked for,
-- what came back, and every rejected item by reason. Top-ups read it for the next unused sample index,
-- so a rerun asks for *more* instead of repeating a call; reports read the rejection counts.
CREATE TABLE generation_calls (
    call_key       VARCHAR NOT NULL,      -- the llm_calls key of the request
    run_id         VARCHAR NOT NULL,
    stage          VARCHAR NOT NULL,      -- elements | synthesize | augment | translate
    scenario       VARCHAR,
    subcategory    VARCHAR,
    task_type      VARCHAR,
    intent         VARCHAR,               -- harmful | benign (synthesize), the parent's (augment)
    method         VARCHAR,               -- element kind, seed | benign, tactic, query | response
    subject        VARCHAR,               -- parent query_id (augment), translation_id (translate)
    sample_index   INTEGER NOT NULL,
    requested      INTEGER NOT NULL,      -- items asked for
    accepted       INTEGER NOT NULL,      -- items that passed every gate
    stored         INTEGER NOT NULL,      -- of those, new rows (the rest were stored before)
    status         VARCHAR NOT NULL,      -- ok | failed (no answer after retries)
    error          VARCHAR,
    rejected       JSON,                  -- {"reason": count}
    prompt_version VARCHAR,
    model          VARCHAR,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (call_key, run_id)
);

-- What the latest synthesis run aimed for, per scenario x subcategory x task type x intent: coverage
-- views compare the stored counts with it (a cell with no query still shows, with n = 0).
CREATE TABLE synthesis_targets (
    scenario    VARCHAR NOT NULL,
    subcategory VARCHAR NOT NULL,
    task_type   VARCHAR NOT NULL,
    intent      VARCHAR NOT NULL,         -- harmful | benign
    target      INTEGER NOT NULL,
    run_id      VARCHAR NOT NULL,
    PRIMARY KEY (scenario, subcategory, task_type, intent)
);

-- One row per distinct English text the translator turned into Chinese (a text shared by two rows or
-- two datasets is translated once).
CREATE TABLE translations (
    translation_id VARCHAR PRIMARY KEY,   -- hash of (kind, original text)
    kind           VARCHAR NOT NULL,      -- query | response
    original_text  VARCHAR NOT NULL,      -- English
    text           VARCHAR NOT NULL,      -- Chinese
    prompt_version VARCHAR NOT NULL,
    generator      VARCHAR NOT NULL,
    call_key       VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One row per translated input record: which dataset row became which query (source = 'translated')
-- and, where the record had a response, which `responses` row (responder 'translated:<dataset>').
CREATE TABLE translated_pairs (
    pair_id                 VARCHAR PRIMARY KEY, -- hash of (dataset, English query, English response)
    dataset                 VARCHAR NOT NULL,
    source_file             VARCHAR NOT NULL,
    source_row              INTEGER NOT NULL,    -- 1-based record number of its first occurrence
    query_translation_id    VARCHAR NOT NULL,
    response_translation_id VARCHAR,
    query_id                VARCHAR NOT NULL,
    response_id             VARCHAR,
    label                   VARCHAR,             -- the dataset's own label of the pair, as given
    run_id                  VARCHAR NOT NULL,
    created_at              TIMESTAMP NOT NULL DEFAULT current_timestamp
);
