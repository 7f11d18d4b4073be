-- Decided texts without a signature under $method (stored before the method changed): one query each,
-- the kept one when the text has one (only kept texts' buckets are matched against new queries); $page_size of them.
SELECT arg_min(q.query_id, (NOT d.kept, q.query_id)) AS query_id, arg_min(q.text, (NOT d.kept, q.query_id)) AS text
FROM dedup d
JOIN queries q USING (query_id)
LEFT JOIN minhash_signatures s ON s.query_id = d.query_id AND s.method = $method
GROUP BY d.norm_hash
HAVING count(s.query_id) = 0
ORDER BY 1
LIMIT $page_size
