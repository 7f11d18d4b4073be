-- A split's export rows as the thin columns that balancing, the manifest and the dataset card need (no
-- texts): what the export holds of a whole split at once. Parameter: $split.
SELECT response_id, split, scenario, label, source, vote_status, label_source, query_run_id, response_run_id
FROM v_export_rows
WHERE split = $split
ORDER BY response_id
