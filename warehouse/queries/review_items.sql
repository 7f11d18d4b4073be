-- The review page's item list: hard samples (or, with $hard_only false, every labelled response of
-- v_dataset) under the page's filters, with how many annotators labelled each and $annotator's label.
-- Parameters: $annotator, $hard_only (boolean), $scenario, $subcategory, $hard_reason (the reason's kind,
-- before any ':'), $source, $label (the final label); a NULL filter matches everything.
SELECT
    d.response_id AS id, d.scenario, d.subcategory, split_part(d.hard_reason, ':', 1) AS hard_reason, d.source,
    d.final_label, d.label_source,
    coalesce(g.n_annotators, 0) AS n_annotators, g.pair_agreement,
    m.label AS my_label
FROM v_dataset d
LEFT JOIN v_annotator_agreement g USING (response_id)
LEFT JOIN _annotator_labels m ON m.response_id = d.response_id AND m.annotator = $annotator
WHERE (NOT $hard_only OR d.vote_status = 'hard')
  AND ($scenario IS NULL OR d.scenario = $scenario)
  AND ($subcategory IS NULL OR d.subcategory = $subcategory)
  AND ($hard_reason IS NULL OR split_part(d.hard_reason, ':', 1) = $hard_reason)
  AND ($source IS NULL OR d.source = $source)
  AND ($label IS NULL OR d.final_label = $label)
ORDER BY d.scenario NULLS LAST, d.subcategory NULLS LAST, d.response_id
