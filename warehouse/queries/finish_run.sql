-- A run's end. Parameters: ? (status), ? (finished_at), ? (summary JSON), ? (run_id).
UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE run_id = ?
