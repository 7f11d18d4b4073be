-- Settled queries, assigned or not, with what the split assignment needs (tasks/data/splits.py).
-- Settled: every wanted response exists and succeeded, and every one has all its votes (none pending) and
-- a settled label (agreed/majority, or hard with an adjudicated or human label, or hard when no
-- adjudicator is configured). A query still waiting for a response or a vote is not a candidate: it is
-- split by the run that completes it, so an outage delays a split and never changes it.
-- `label` is the query's stratum label: the majority of its responses' final labels (a tie: 不安全).
-- `split` is the stored split (NULL: not assigned yet); `cluster_split` a split already held by any
-- member of the query's near-duplicate cluster. Queries that leak a benchmark question are never
-- candidates (v_contaminated). Parameters: $n_judges, $needs_adjudication (boolean).
-- Registered frame: wanted(responder, model, sample_index), the responses every kept query should have.
WITH unanswered AS (
    SELECT DISTINCT q.query_id
    FROM queries q
    JOIN dedup d ON d.query_id = q.query_id AND d.kept
    CROSS JOIN wanted w
    ANTI JOIN responses r
        ON r.query_id = q.query_id AND r.model = w.model AND r.sample_index = w.sample_index AND r.status = 'ok'
), per_response AS (
    SELECT r.query_id, f.response_id IS NOT NULL AS voted, f.vote_status, f.label_source, f.n_votes, f.final_label
    FROM responses r
    LEFT JOIN v_final_labels f USING (response_id)
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
    WHERE query_id NOT IN (SELECT query_id FROM unanswered)
    GROUP BY query_id
    HAVING bool_and(voted AND vote_status <> 'pending' AND n_votes >= $n_judges)
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
