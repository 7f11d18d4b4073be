-- The synthesized seeds and benign look-alikes, whose diversity the coverage report measures: one keyset
-- page (tasks/reports/coverage.py: diversity). Parameters: $after_subcategory, $after_query_id, $page_size.
SELECT coalesce(subcategory, '') AS subcategory, query_id, text FROM queries
WHERE source = 'synthetic' AND method IN ('seed', 'benign')
  AND (coalesce(subcategory, ''), query_id) > ($after_subcategory, $after_query_id)
ORDER BY coalesce(subcategory, ''), query_id
LIMIT $page_size
