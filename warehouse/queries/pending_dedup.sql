-- One page of the queries the dedup stage has not decided yet, in decision order (creation time in
-- microseconds, then query_id), after the cursor ($after_seq, $after_id); $page_size of them.
SELECT q.query_id, q.text, epoch_us(q.created_at) AS seq
FROM queries q
ANTI JOIN dedup d USING (query_id)
WHERE epoch_us(q.created_at) > $after_seq OR (epoch_us(q.created_at) = $after_seq AND q.query_id > $after_id)
ORDER BY epoch_us(q.created_at), q.query_id
LIMIT $page_size
