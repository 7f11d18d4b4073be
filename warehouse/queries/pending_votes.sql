-- Successful responses that a judge has not voted on yet (a failed call is retried; an abstention is final).
-- Registered frame: judges(judge, model).
SELECT r.response_id, q.query_id, q.text AS query, r.text AS response, j.judge, j.model
FROM responses r
JOIN queries q USING (query_id)
CROSS JOIN judges j
ANTI JOIN votes v ON v.response_id = r.response_id AND v.model = j.model AND v.status <> 'failed'
WHERE r.status = 'ok'
ORDER BY r.response_id, j.judge
