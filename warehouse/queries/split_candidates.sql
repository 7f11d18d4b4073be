-- Queries ready for a split and not assigned yet: every successful response has a settled label
-- (agreed/majority, or hard with an adjudicated or human label, or hard when no adjudicator is set).
-- Parameters: $n_judges, $needs_adjudication (boolean).
WITH per_response AS (
    SELECT r.query_id, f.vote_status, f.label_source, f.n_votes, f.final_label
    FROM responses r
    JOIN v_final_labels f USING (response_id)
    WHERE r.status = 'ok'
)
SELECT
    q.query_id, q.source, q.scenario, coalesce(d.cluster_id, q.query_id) AS cluster_id,
    bool_or(p.vote_status = 'hard') AS has_hard,
    count(*) AS n_responses
FROM queries q
JOIN per_response p USING (query_id)
LEFT JOIN dedup d USING (query_id)
ANTI JOIN splits s USING (query_id)
GROUP BY q.query_id, q.source, q.scenario, d.cluster_id
HAVING bool_and(p.n_votes >= $n_judges)
   AND bool_and(p.final_label IS NOT NULL OR p.vote_status = 'hard')
   AND bool_and(p.vote_status <> 'hard' OR NOT $needs_adjudication OR p.label_source IN ('adjudicated', 'human'))
ORDER BY q.query_id
