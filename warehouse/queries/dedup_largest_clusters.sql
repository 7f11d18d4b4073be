-- The largest dedup clusters for the run summary: size and how alike the members are to the kept text.
SELECT cluster_id, members, exact, near, min_similarity, median_similarity, left(canonical_text, 60) AS canonical_text
FROM v_dedup_clusters
ORDER BY members DESC, cluster_id
LIMIT $limit
