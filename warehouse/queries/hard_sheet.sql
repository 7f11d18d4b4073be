-- The human re-annotation sheet: hard samples with every judge's vote and the adjudication.
-- Parameters: $include_labelled (boolean: also samples a human already labelled).
SELECT
    h.response_id AS id, h.query, h.response, h.scenario, h.subcategory, h.hard_reason,
    h.majority_label, h.adjudicated_label, any_value(a.analysis) AS adjudication_analysis, h.human_label,
    list({'judge': v.judge, 'label': v.label, 'analysis': v.analysis} ORDER BY v.judge) AS votes
FROM v_hard_samples h
JOIN votes v USING (response_id)
LEFT JOIN adjudications a USING (response_id)
WHERE $include_labelled OR h.human_label IS NULL
GROUP BY h.response_id, h.query, h.response, h.scenario, h.subcategory, h.hard_reason,
         h.majority_label, h.adjudicated_label, h.human_label
ORDER BY h.scenario NULLS LAST, h.response_id
