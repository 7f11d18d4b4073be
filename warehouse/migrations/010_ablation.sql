-- 010: the paper's ablations (flows/ablation.py). One row per grid cell: its coordinates on the
-- grid's axes, what it trained (the final stage's training run, hence the guard `training:<id>`) and
-- the benchmarks it was evaluated on. A cell is done when its row says completed: a rerun skips it.
CREATE TABLE ablation_cells (
    cell_id         VARCHAR PRIMARY KEY,   -- hash of the coordinates, base model, training and eval overrides
    grid            VARCHAR NOT NULL,      -- the grid file's name
    coordinates     JSON NOT NULL,         -- {"stages": "curriculum", "critic": "rear", ...}
    is_reference    BOOLEAN NOT NULL,      -- the cell every other cell is compared with
    base_model      VARCHAR NOT NULL,
    export_id       VARCHAR NOT NULL,      -- the export variant it trained on (critic, rules)
    training_run_id VARCHAR NOT NULL,      -- the last stage trained
    guard           VARCHAR NOT NULL,      -- predictions.guard of its evaluation
    benchmarks      JSON NOT NULL,         -- the registered benchmark names it was scored on
    status          VARCHAR NOT NULL,      -- completed
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);
