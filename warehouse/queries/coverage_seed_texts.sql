-- The synthesized seeds and benign look-alikes, whose diversity the coverage report measures.
SELECT subcategory, text FROM queries
WHERE source = 'synthetic' AND method IN ('seed', 'benign')
ORDER BY subcategory, query_id
