-- Queries the dedup stage has not decided yet, in the order that makes the earliest one canonical.
SELECT q.query_id, q.text
FROM queries q
ANTI JOIN dedup d USING (query_id)
ORDER BY q.created_at, q.query_id
