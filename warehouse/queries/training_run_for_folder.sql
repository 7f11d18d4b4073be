-- The newest completed training run that wrote this folder. Parameter: ? (output_path).
SELECT training_run_id FROM training_runs WHERE output_path = ? AND status = 'completed'
ORDER BY created_at DESC LIMIT 1
