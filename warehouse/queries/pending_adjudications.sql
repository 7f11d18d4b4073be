-- Hard samples (judge disagreement or a guard's) whose votes are complete (every configured judge
-- answered), with no adjudication yet and no human label (a human label already settles them).
-- Parameter: $n_judges. Keyset page (tasks/llm/step.py: pages): $after_response_id, $page_size — a
-- guard's mining can make a large share of the pool hard at once.
SELECT h.response_id, h.query, h.response,
       list({'judge': v.judge, 'label': v.label, 'analysis': v.analysis} ORDER BY v.judge) AS votes
FROM v_hard_samples h
JOIN v_vote_summary s USING (response_id)
JOIN votes v USING (response_id)
ANTI JOIN adjudications a USING (response_id)
WHERE s.n_votes >= $n_judges AND h.human_label IS NULL AND h.response_id > $after_response_id
GROUP BY h.response_id, h.query, h.response
ORDER BY h.response_id
LIMIT $page_size
