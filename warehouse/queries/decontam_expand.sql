-- Benchmark matches of stored queries (one query per text) -> every decided query with that text.
-- Frame: matches(ref_id, benchmark, item_id, reason, similarity).
SELECT d.query_id, m.benchmark, m.item_id, arg_max(m.reason, m.similarity) AS reason,
       max(m.similarity) AS similarity
FROM matches m
JOIN dedup r ON r.query_id = m.ref_id
JOIN dedup d ON d.norm_hash = r.norm_hash
GROUP BY ALL
