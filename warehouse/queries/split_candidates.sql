-- Settled queries, assigned or not, with what the split assignment needs (tasks/splits.py).
-- Settled: every successful response has all its votes and a settled label (agreed/majority, or hard
-- with an adjudicated or human label, or hard when no adjudicator is configured).
-- `label` is the query's stratum label: the majority of its responses' final labels (a tie: 不安全).
-- `split` is the stored split (NULL: not assigned yet); `cluster_split` a split already held by any
-- member of the query's near-duplicate cluster. Queries that leak a benchmark question are never
-- candidates (v_contaminated). Parameters: $n_judges, $needs_adjudication (boolean).
WITH per_response AS (
    SELECT r.query_id, f.vote_status, f.label_source, f.n_votes, f.final_label
    FROM responses r
    JOIN v_final_labels f USING (response_id)
    WHERE r.status = 'ok'
), settled AS (
    SELECT
        query_id,
        bool_or(vote_status = 'hard') AS has_hard,
        bool_or(vote_status = 'hard' AND label_source IN ('adjudicated', 'human')) AS has_verified_hard,
        count(*) FILTER (WHERE final_label = '不安全') AS n_unsafe,
        count(*) FILTER (WHERE final_label = '安全') AS n_safe,
        count(*) AS n_responses
    FROM per_response
    GROUP BY query_id
    HAVING bool_and(n_votes >= $n_judges)
       AND bool_and(final_label IS NOT NULL OR vote_status = 'hard')
       AND bool_and(vote_status <> 'hard' OR NOT $needs_adjudication OR label_source IN ('adjudicated', 'human'))
), cluster_splits AS (
    SELECT d.cluster_id, min(s.split) AS cluster_split
    FROM splits s JOIN dedup d USING (query_id)
    GROUP BY d.cluster_id
)
SELECT
    q.query_id, q.source, coalesce(q.scenario, '') AS scenario,
    CASE WHEN s.n_unsafe = 0 AND s.n_safe = 0 THEN ''
         WHEN s.n_unsafe >= s.n_safe THEN '不安全' ELSE '安全' END AS label,
    coalesce(d.cluster_id, q.query_id) AS cluster_id,
    s.has_hard, s.has_verified_hard, s.n_responses,
    sp.split, cs.cluster_split
FROM settled s
JOIN queries q USING (query_id)
LEFT JOIN dedup d USING (query_id)
LEFT JOIN splits sp USING (query_id)
LEFT JOIN cluster_splits cs ON cs.cluster_id = coalesce(d.cluster_id, q.query_id)
WHERE q.query_id NOT IN (SELECT query_id FROM v_contaminated)
ORDER BY q.query_id
