-- Rows of one split for export, with every metadata column and the analysis that supports the final
-- label: the human note, else the adjudicator's analysis, else the first agreeing judge's analysis.
-- A hard (disputed) response is exported only with an adjudicated or human label; queries that leak a
-- benchmark question (v_contaminated) never leave in a training split. Parameter: $split.
WITH agreeing AS (
    SELECT v.response_id, arg_min(v.analysis, v.judge) AS analysis
    FROM votes v JOIN v_final_labels f USING (response_id)
    WHERE v.label = f.final_label AND v.analysis IS NOT NULL
    GROUP BY v.response_id
), human AS (
    SELECT response_id, arg_max(note, created_at) AS note FROM human_labels GROUP BY response_id
)
SELECT
    ds.response_id, ds.query_id, ds.query, ds.response, ds.responder, ds.responder_model,
    ds.scenario, ds.subcategory, ds.task_type, ds.source, ds.method, ds.intended_label,
    ds.final_label AS label, ds.label_source, ds.vote_status, ds.hard_reason, ds.margin,
    f.n_votes, f.n_safe, f.n_unsafe, f.n_abstain, f.majority_label, f.adjudicated_label, f.human_label,
    ds.split, ds.dedup_cluster,
    coalesce(nullif(h.note, ''), CASE WHEN a.label = ds.final_label THEN a.analysis END, g.analysis, '') AS analysis,
    q.provenance, q.run_id AS query_run_id, r.run_id AS response_run_id
FROM v_dataset ds
JOIN v_final_labels f USING (response_id)
JOIN queries q USING (query_id)
JOIN responses r USING (response_id)
LEFT JOIN agreeing g USING (response_id)
LEFT JOIN adjudications a USING (response_id)
LEFT JOIN human h USING (response_id)
WHERE ds.split = $split AND ds.final_label IN ('安全', '不安全')
  AND (ds.vote_status <> 'hard' OR ds.label_source IN ('adjudicated', 'human'))
  AND ($split = 'eval' OR ds.query_id NOT IN (SELECT query_id FROM v_contaminated))
ORDER BY ds.response_id
