-- Rejections by reason, of one run or of all. Parameters: $run_id (NULL: every run).
SELECT reason, CAST(sum(n) AS BIGINT) AS n FROM v_rejections
WHERE $run_id IS NULL OR run_id = $run_id
GROUP BY 1
