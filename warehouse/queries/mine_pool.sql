-- The settled pretrain pool a guard has not scored yet under $prompt (`libra run mine`): every response
-- of a query in split pretrain whose final label is 安全 or 不安全 (a pending or unsettled sample is
-- not the guard's to second-guess yet). item_id = response_id, as predictions store it (benchmark
-- 'warehouse', read by v_guard_disagreements). Keyset page (tasks/llm/step.py: pages): $after_item_id,
-- $page_size. Parameters: $guard, $prompt.
SELECT f.response_id AS item_id, q.text AS question, r.text AS response
FROM v_final_labels f
JOIN responses r USING (response_id)
JOIN queries q ON q.query_id = r.query_id
JOIN splits s ON s.query_id = r.query_id AND s.split = 'pretrain'
WHERE f.final_label IN ('安全', '不安全') AND r.status = 'ok'
  AND f.response_id > $after_item_id
  AND NOT EXISTS (SELECT 1 FROM predictions p
                  WHERE p.guard = $guard AND p.benchmark = 'warehouse' AND p.item_id = f.response_id
                    AND p.status = 'ok' AND p.prompt_version = $prompt)
ORDER BY f.response_id
LIMIT $page_size
