-- One item of the review page: the query and response, every judge's label and analysis, the
-- adjudication, why it is hard, the guards that disagree, and the human labels so far.
-- Parameters: $id (the response_id).
SELECT
    d.response_id AS id, d.query, d.response, d.responder, d.responder_model, d.scenario, d.subcategory,
    d.task_type, d.source, d.method, d.final_label, d.label_source, d.vote_status, d.hard_reason,
    f.majority_label, f.margin, f.n_votes, f.n_safe, f.n_unsafe, f.n_abstain,
    (SELECT list({'judge': v.judge, 'model': v.model, 'label': v.label, 'analysis': v.analysis} ORDER BY v.judge)
     FROM votes v WHERE v.response_id = d.response_id) AS votes,
    (SELECT list({'adjudicator': a.adjudicator, 'label': a.label, 'analysis': a.analysis})
     FROM adjudications a WHERE a.response_id = d.response_id) AS adjudications,
    (SELECT list({'guard': g.guard, 'label': g.guard_label} ORDER BY g.guard)
     FROM v_guard_disagreements g WHERE g.response_id = d.response_id) AS guards,
    (SELECT list({'annotator': h.annotator, 'label': h.label, 'note': h.note} ORDER BY h.annotator)
     FROM _annotator_labels h WHERE h.response_id = d.response_id) AS human_labels
FROM v_dataset d
JOIN v_final_labels f USING (response_id)
WHERE d.response_id = $id
