-- The guard prompt a training run's data was exported with. Parameter: ? (training_run_id).
SELECT json_extract_string(data, '$.guard_prompt_version') FROM training_runs WHERE training_run_id = ?
