-- Synthetic seed and benign queries (not themselves augmentations) that can get an augmented child: one
-- keyset page (flows/synthesis.py: augment_flow). Parameters: $after_query_id, $page_size.
SELECT query_id, text, source, scenario, subcategory, task_type, intended_label, elements
FROM queries
WHERE source = 'synthetic' AND method IN ('seed', 'benign') AND query_id > $after_query_id
ORDER BY query_id
LIMIT $page_size
