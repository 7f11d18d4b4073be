-- Decided queries with the same normalised text as batch texts, one per text (all of them share one
-- cluster). Frame: hashes(pos, norm_hash).
SELECT h.pos, min(d.query_id) AS ref_id
FROM hashes h
JOIN dedup d USING (norm_hash)
GROUP BY h.pos
