-- Queries the dedup stage has not decided yet, in canonical order: the earliest member of a cluster is
-- its canonical one. seq = creation time in microseconds (ties broken by query_id).
SELECT q.query_id, q.text, epoch_us(q.created_at) AS seq
FROM queries q
ANTI JOIN dedup d USING (query_id)
ORDER BY q.created_at, q.query_id
