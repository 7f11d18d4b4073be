-- v_dedup_clusters: one row per dedup cluster with more than one member: its canonical (kept) query,
-- its size, how many members are exact / near duplicates of it, and how alike they are to it (the
-- similarity of the dropped members to the kept one: >= the threshold for every member decided by the
-- greedy rule; NULL for decisions made before the similarity was stored).
CREATE OR REPLACE VIEW v_dedup_clusters AS
SELECT d.cluster_id, c.text AS canonical_text, count(*) AS members,
       count(*) FILTER (WHERE d.reason = 'exact') AS exact, count(*) FILTER (WHERE d.reason = 'near') AS near,
       round(min(d.similarity) FILTER (WHERE NOT d.kept), 3) AS min_similarity,
       round(median(d.similarity) FILTER (WHERE NOT d.kept), 3) AS median_similarity,
       any_value(d.method) AS method
FROM dedup d
JOIN queries c ON c.query_id = d.cluster_id
GROUP BY d.cluster_id, c.text
HAVING count(*) > 1;

-- v_benchmark_leakage: one row per registered benchmark: items, items that some stored query duplicates,
-- and the queries excluded from training because of it (exact / near).
CREATE OR REPLACE VIEW v_benchmark_leakage AS
SELECT b.benchmark, count(DISTINCT b.item_id) AS items,
       count(DISTINCT x.item_id) AS leaked_items,
       count(DISTINCT x.query_id) AS contaminated_queries,
       count(DISTINCT x.query_id) FILTER (WHERE x.reason = 'exact') AS exact_queries,
       count(DISTINCT x.query_id) FILTER (WHERE x.reason = 'near') AS near_queries
FROM benchmarks b
LEFT JOIN decontamination x ON x.benchmark = b.benchmark AND x.item_id = b.item_id
GROUP BY b.benchmark;
