-- Every settled response with the texts its judges saw, its vote tallies and its label-model posterior:
-- what bench/labels.py scores against the stub world's ground truth.
SELECT
    r.response_id AS item_id, q.text AS query_text, r.text AS response_text,
    s.n_safe, s.n_unsafe, s.vote_status, lp.p_unsafe
FROM responses r
JOIN queries q USING (query_id)
JOIN v_vote_summary s USING (response_id)
LEFT JOIN label_posteriors lp USING (response_id)
WHERE r.status = 'ok' AND s.vote_status <> 'pending'
ORDER BY item_id
