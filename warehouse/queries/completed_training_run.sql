-- One training stage if it completed. Parameters: ? (training_run_id).
SELECT * FROM training_runs WHERE training_run_id = ? AND status = 'completed'
