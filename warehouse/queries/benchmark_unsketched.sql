-- Registered benchmark items not sketched under $method yet.
SELECT b.benchmark, b.item_id, b.question
FROM benchmarks b
ANTI JOIN (SELECT benchmark, item_id FROM benchmark_sketches WHERE method = $method) s USING (benchmark, item_id)
ORDER BY b.benchmark, b.item_id
