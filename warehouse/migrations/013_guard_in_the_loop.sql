-- 013: the guard in the loop (issue 16 part 3; flows/curriculum.py).
-- split_moves: the one move a stored split may make. A pretrain query that has come to hold a hard sample
-- settled by an adjudicator or a human (a stage-1 guard disagreed with its judges, `libra run mine`)
-- moves to finetune, as it would have been assigned had the sample been hard from the start; its
-- near-duplicate cluster moves with it. Eval never moves, nothing moves into eval, and the move is
-- recorded here (the splits row holds the split now, this table what it was).
CREATE TABLE split_moves (
    query_id    VARCHAR NOT NULL,
    from_split  VARCHAR NOT NULL,
    to_split    VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,          -- verified_hard: the hard reason of the sample that moved it
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (query_id, to_split)
);

-- curricula: one Libra curriculum (stage-1 train -> mine -> adjudicate -> split -> stage-2 train ->
-- eval), so a rerun resumes it: the stage-1 export is pinned here, whatever the newest export is when
-- the run resumes. settings_key hashes the base model and the training and mining settings.
CREATE TABLE curricula (
    curriculum_id          VARCHAR PRIMARY KEY,
    settings_key           VARCHAR NOT NULL,
    status                 VARCHAR NOT NULL,   -- the last step done: started | stage1 | mined | split | stage2 | completed
    stage1_export_id       VARCHAR NOT NULL,
    stage1_training_run_id VARCHAR,
    guard                  VARCHAR,            -- the stage-1 guard that mined (predictions.guard)
    stage2_export_id       VARCHAR,
    stage2_training_run_id VARCHAR,
    benchmark              VARCHAR,
    summary                JSON,
    run_id                 VARCHAR NOT NULL,   -- the run that last advanced it
    created_at             TIMESTAMP NOT NULL DEFAULT current_timestamp  -- when the row was last written
);
