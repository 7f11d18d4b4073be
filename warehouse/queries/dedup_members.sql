-- Every decided member of the given clusters, with its canonical order. Frame: clusters(cluster_id).
SELECT d.query_id AS item_id, d.norm_hash, d.cluster_id, epoch_us(q.created_at) AS seq, d.kept, d.reason,
       d.matched_id
FROM dedup d
JOIN clusters c USING (cluster_id)
JOIN queries q USING (query_id)
