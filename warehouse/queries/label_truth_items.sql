-- Every settled response with the texts its judges saw, its vote tallies, its label-model posterior and
-- whether it has a decisive adjudication (a known label the label model is anchored on): what
-- bench/labels.py scores against the stub world's ground truth.
SELECT
    r.response_id AS item_id, q.text AS query_text, r.text AS response_text,
    s.n_safe, s.n_unsafe, s.vote_status, lp.p_unsafe,
    r.response_id IN (SELECT response_id FROM adjudications WHERE label IN ('安全', '不安全')) AS anchored
FROM responses r
JOIN queries q USING (query_id)
JOIN v_vote_summary s USING (response_id)
LEFT JOIN label_posteriors lp USING (response_id)
WHERE r.status = 'ok' AND s.vote_status <> 'pending'
ORDER BY item_id
