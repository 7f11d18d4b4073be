-- Stored signatures of kept queries, for incremental dedup. Parameter: $method.
SELECT d.query_id, d.norm_hash, d.cluster_id, s.signature
FROM dedup d
JOIN minhash_signatures s ON s.query_id = d.query_id AND s.method = $method
WHERE d.kept
ORDER BY d.created_at, d.query_id
