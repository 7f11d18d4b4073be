-- Stored seed queries and benign look-alikes per synthesis cell (scenario x subcategory x task type x intent).
SELECT scenario, subcategory, task_type, intended_label AS intent, count(*) AS n
FROM queries
WHERE source = 'synthetic' AND method IN ('seed', 'benign')
GROUP BY ALL
