-- `libra status`: the latest top-level runs.
SELECT run_id, flow, status, started_at, finished_at
FROM runs
WHERE parent_run_id IS NULL
ORDER BY started_at DESC
LIMIT 5
