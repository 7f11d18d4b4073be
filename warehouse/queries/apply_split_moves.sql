-- Apply the moves a run recorded in split_moves (tasks/data/splits.py: move_verified_hard): only a row
-- still holding the move's from_split changes. Parameter: $run_id.
UPDATE splits SET split = m.to_split
FROM split_moves m
WHERE m.query_id = splits.query_id AND m.run_id = $run_id AND splits.split = m.from_split
