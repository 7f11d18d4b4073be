-- Synthetic seed and benign queries (not themselves augmentations) that can get an augmented child.
SELECT query_id, text, source, scenario, subcategory, task_type, intended_label, elements
FROM queries
WHERE source = 'synthetic' AND method IN ('seed', 'benign')
ORDER BY query_id
