-- Kept queries x responders x sample indexes that have no successful response yet.
-- Registered frame: wanted(responder, model, sample_index). Keyset page (tasks/llm/step.py: pages):
-- $after_query_id, $after_responder, $after_sample_index (the last row of the page before), $page_size.
SELECT q.query_id, q.text, w.responder, w.model, w.sample_index
FROM queries q
JOIN dedup d ON d.query_id = q.query_id AND d.kept
CROSS JOIN wanted w
ANTI JOIN responses r
    ON r.query_id = q.query_id AND r.model = w.model AND r.sample_index = w.sample_index AND r.status = 'ok'
WHERE (q.query_id, w.responder, w.sample_index) > ($after_query_id, $after_responder, $after_sample_index)
ORDER BY q.query_id, w.responder, w.sample_index
LIMIT $page_size
