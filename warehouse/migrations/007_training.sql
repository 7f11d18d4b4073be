-- 007: training and evaluation facts.

-- What a training stage started from and ended with. The fingerprints are hashes of the model
-- weights (tasks/training/trainer.py: weights_fingerprint): stage 2 of the curriculum must start from exactly
-- the weights stage 1 saved (init_fingerprint = the parent's final_fingerprint).
ALTER TABLE training_runs ADD COLUMN status VARCHAR DEFAULT 'completed';  -- completed | failed
ALTER TABLE training_runs ADD COLUMN error VARCHAR;
ALTER TABLE training_runs ADD COLUMN export_id VARCHAR;
ALTER TABLE training_runs ADD COLUMN data JSON;            -- splits, fractions, examples used / left out
ALTER TABLE training_runs ADD COLUMN init_fingerprint VARCHAR;
ALTER TABLE training_runs ADD COLUMN final_fingerprint VARCHAR;
ALTER TABLE training_runs ADD COLUMN final_loss DOUBLE;
ALTER TABLE training_runs ADD COLUMN device VARCHAR;       -- cpu | cuda:<name>, and the precision

-- How a prediction came about. A failed call (endpoint down, prompt too long) is stored with status
-- 'failed' and no label: it counts as wrong in the metrics, and the next eval run retries it.
ALTER TABLE predictions ADD COLUMN how VARCHAR;            -- the parser's route (tasks/annotation/verdicts.py)
ALTER TABLE predictions ADD COLUMN status VARCHAR DEFAULT 'ok';  -- ok | failed
ALTER TABLE predictions ADD COLUMN error VARCHAR;
ALTER TABLE predictions ADD COLUMN prompt_version VARCHAR;  -- prompt template + token budget (answer_version)
ALTER TABLE predictions ADD COLUMN call_key VARCHAR;       -- the llm_calls row (endpoint guards)
ALTER TABLE predictions ADD COLUMN created_at TIMESTAMP DEFAULT current_timestamp;

-- One row per guard that was evaluated: what `predictions.guard` names.
CREATE TABLE guards (
    guard           VARCHAR PRIMARY KEY,   -- endpoint:<name>:<model> | training:<id> | checkpoint:<dir>@<hash>
    kind            VARCHAR NOT NULL,      -- endpoint | checkpoint
    model           VARCHAR NOT NULL,      -- the served model name, or the checkpoint folder
    endpoint        VARCHAR,
    training_run_id VARCHAR,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);
