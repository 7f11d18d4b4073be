-- One item of the review page: the query and response, every judge's label and analysis, the
-- adjudication, why it is hard, the guards that disagree, and the human labels so far.
-- Parameters: $id (the response_id). Each part is filtered by the id before it is joined: the page
-- asks for one item at a time and should not aggregate the whole warehouse to answer.
WITH f AS (
    SELECT * FROM v_final_labels WHERE response_id = $id
), v AS (
    SELECT response_id, list({'judge': judge, 'model': model, 'label': label, 'analysis': analysis} ORDER BY judge) AS votes
    FROM votes WHERE response_id = $id GROUP BY response_id
), a AS (
    SELECT response_id, list({'adjudicator': adjudicator, 'label': label, 'analysis': analysis}) AS adjudications
    FROM adjudications WHERE response_id = $id GROUP BY response_id
), g AS (
    SELECT response_id, list({'guard': guard, 'label': guard_label} ORDER BY guard) AS guards
    FROM v_guard_disagreements WHERE response_id = $id GROUP BY response_id
), h AS (
    SELECT response_id, list({'annotator': annotator, 'label': label, 'note': note} ORDER BY annotator) AS human_labels
    FROM _annotator_labels WHERE response_id = $id GROUP BY response_id
)
SELECT
    r.response_id AS id, q.text AS query, r.text AS response, r.responder, r.model AS responder_model,
    q.scenario, q.subcategory, q.task_type, q.source, q.method, f.final_label, f.label_source, f.vote_status,
    f.hard_reason, f.majority_label, f.margin, f.n_votes, f.n_safe, f.n_unsafe, f.n_abstain,
    v.votes, a.adjudications, g.guards, h.human_labels
FROM responses r
JOIN queries q USING (query_id)
JOIN f USING (response_id)
LEFT JOIN v USING (response_id)
LEFT JOIN a USING (response_id)
LEFT JOIN g USING (response_id)
LEFT JOIN h USING (response_id)
WHERE r.response_id = $id AND r.status = 'ok'
