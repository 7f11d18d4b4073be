-- Successful responses that a judge has not voted on yet (a failed call is retried; an abstention is final).
-- Registered frame: judges(judge, model). Keyset page (tasks/llm/step.py: pages): $after_response_id,
-- $after_judge (the last row of the page before), $page_size.
SELECT r.response_id, q.query_id, q.text AS query, r.text AS response, j.judge, j.model
FROM responses r
JOIN queries q USING (query_id)
CROSS JOIN judges j
ANTI JOIN votes v ON v.response_id = r.response_id AND v.model = j.model AND v.status <> 'failed'
WHERE r.status = 'ok' AND (r.response_id, j.judge) > ($after_response_id, $after_judge)
ORDER BY r.response_id, j.judge
LIMIT $page_size
