-- Endpoints the latest top-level runs declared down (their summary's endpoints_down; the factory's
-- gathers its stages'), newest first: what `libra status` warns about. Parameter: $runs (how many runs).
WITH latest AS (
    SELECT run_id, flow, status, started_at, TRY_CAST(summary AS JSON) -> 'endpoints_down' AS down
    FROM runs
    WHERE parent_run_id IS NULL AND summary IS NOT NULL
    ORDER BY started_at DESC
    LIMIT $runs
)
SELECT l.run_id, l.flow, l.status, l.started_at, e.endpoint,
       json_extract_string(l.down, '$."' || e.endpoint || '"') AS reason
FROM latest l, unnest(json_keys(l.down)) AS e(endpoint)
ORDER BY l.started_at DESC, e.endpoint
