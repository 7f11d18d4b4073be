-- Hard samples (judge disagreement or a guard's) whose votes are complete (every configured judge
-- answered), with no adjudication yet and no human label (a human label already settles them).
-- Parameter: $n_judges.
SELECT h.response_id, h.query, h.response,
       list({'judge': v.judge, 'label': v.label, 'analysis': v.analysis} ORDER BY v.judge) AS votes
FROM v_hard_samples h
JOIN v_vote_summary s USING (response_id)
JOIN votes v USING (response_id)
ANTI JOIN adjudications a USING (response_id)
WHERE s.n_votes >= $n_judges AND h.human_label IS NULL
GROUP BY h.response_id, h.query, h.response
ORDER BY h.response_id
