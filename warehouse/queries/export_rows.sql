-- Rows of one split for export, with the analysis that supports the final label:
-- the human note, else the adjudicator's analysis, else the first agreeing judge's analysis.
-- Parameter: $split.
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
    ds.final_label AS label, ds.label_source, ds.vote_status, ds.hard_reason, ds.split,
    coalesce(nullif(h.note, ''), CASE WHEN a.label = ds.final_label THEN a.analysis END, g.analysis, '') AS analysis
FROM v_dataset ds
LEFT JOIN agreeing g USING (response_id)
LEFT JOIN adjudications a USING (response_id)
LEFT JOIN human h USING (response_id)
WHERE ds.split = $split AND ds.final_label IN ('安全', '不安全')
ORDER BY ds.response_id
