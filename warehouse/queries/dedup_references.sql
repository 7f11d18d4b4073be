-- Text, signature, cluster and decision order (seq) of matched stored queries. Frame: refs(ref_id).
-- Parameter: $method.
SELECT r.ref_id, q.text, s.signature, d.cluster_id, epoch_us(q.created_at) AS seq
FROM refs r
JOIN queries q ON q.query_id = r.ref_id
JOIN dedup d ON d.query_id = r.ref_id
LEFT JOIN minhash_signatures s ON s.query_id = r.ref_id AND s.method = $method
