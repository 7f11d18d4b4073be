-- The votes the label model (vote.method dawid_skene) learns from: the counted judges' 安全/不安全 votes
-- on every response whose vote is complete (not pending). Abstentions are no votes here.
SELECT v.response_id AS item_id, v.judge, any_value(v.label) AS label
FROM votes v
JOIN v_vote_summary s USING (response_id)
WHERE s.vote_status <> 'pending' AND v.status = 'ok' AND v.label IN ('安全', '不安全')
  AND list_contains(s.judges, v.judge)
GROUP BY v.response_id, v.judge
ORDER BY v.response_id, v.judge
