-- Decided queries with the same normalised text as batch texts: per text its first query (creation
-- order), its cluster, and the similarity an exact copy inherits (1 when that query is kept).
-- Frame: hashes(pos, norm_hash).
SELECT h.pos,
       arg_min(d.query_id, (epoch_us(q.created_at), d.query_id)) AS ref_id,
       arg_min(d.cluster_id, (epoch_us(q.created_at), d.query_id)) AS cluster_id,
       arg_min(CASE WHEN d.kept THEN 1.0 ELSE d.similarity END, (epoch_us(q.created_at), d.query_id)) AS similarity
FROM hashes h
JOIN dedup d USING (norm_hash)
JOIN queries q USING (query_id)
GROUP BY h.pos
