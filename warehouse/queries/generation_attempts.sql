-- Per cell of one stage: the next unused sample index and how many sample indexes were tried.
-- Parameter: $stage.
SELECT scenario, subcategory, task_type, intent, method, subject,
       max(sample_index) + 1 AS next_index, count(DISTINCT sample_index) AS attempts
FROM generation_calls
WHERE stage = $stage
GROUP BY ALL
