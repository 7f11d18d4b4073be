-- Kept queries x responders x sample indexes that have no successful response yet.
-- Registered frame: wanted(responder, model, sample_index).
SELECT q.query_id, q.text, w.responder, w.model, w.sample_index
FROM queries q
JOIN dedup d ON d.query_id = q.query_id AND d.kept
CROSS JOIN wanted w
ANTI JOIN responses r
    ON r.query_id = q.query_id AND r.model = w.model AND r.sample_index = w.sample_index AND r.status = 'ok'
ORDER BY q.query_id, w.responder, w.sample_index
