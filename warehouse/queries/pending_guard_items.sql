-- Benchmark items (the subset: the first $limit per source by a hash of their id, all when NULL) this
-- guard has no good answer for under $prompt (tasks/evaluation/guard.py: answer_version).
-- Parameters: $benchmark, $limit, $guard, $prompt.
WITH chosen AS (
    SELECT *, row_number() OVER (PARTITION BY source ORDER BY md5(item_id)) AS k
    FROM benchmarks WHERE benchmark = $benchmark
)
SELECT c.item_id, c.question, c.response FROM chosen c
WHERE ($limit IS NULL OR c.k <= $limit)
  AND NOT EXISTS (SELECT 1 FROM predictions p
                  WHERE p.guard = $guard AND p.benchmark = $benchmark AND p.item_id = c.item_id
                    AND p.status = 'ok' AND p.prompt_version = $prompt)
ORDER BY c.item_id
