-- How many human labels a run stored. Parameters: ? (run_id).
SELECT count(*) FROM human_labels WHERE run_id = ?
