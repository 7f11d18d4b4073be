-- The newest completed training run (a guard spec training:latest).
SELECT training_run_id, output_path FROM training_runs WHERE status = 'completed' ORDER BY created_at DESC LIMIT 1
