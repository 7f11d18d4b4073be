-- v_vote_summary: the majority vote per response, and its status.
--   agreed   every judge answered and all gave the same label (stage-1 pretrain data)
--   majority one label wins with margin >= settings 'vote.min_margin' and abstentions <=
--            'vote.max_abstentions'; margin = |#安全 - #不安全| / #votes
--   hard     anything else: disagreement below the margin, a tie, too many abstentions, a single vote
-- A failed call or an unparseable answer is an abstention: it never counts as either label.
CREATE OR REPLACE VIEW v_vote_summary AS
WITH policy AS (
    SELECT
        coalesce(max(CASE WHEN key = 'vote.min_margin' THEN TRY_CAST(value AS DOUBLE) END), 0.6) AS min_margin,
        coalesce(max(CASE WHEN key = 'vote.max_abstentions' THEN TRY_CAST(value AS INTEGER) END), 0) AS max_abstentions
    FROM settings
), tallies AS (
    SELECT
        response_id,
        count(*) AS n_votes,
        count(*) FILTER (WHERE label = '安全') AS n_safe,
        count(*) FILTER (WHERE label = '不安全') AS n_unsafe,
        count(*) FILTER (WHERE label IS NULL OR label NOT IN ('安全', '不安全')) AS n_abstain,
        list(judge ORDER BY judge) AS judges
    FROM votes
    GROUP BY response_id
)
SELECT
    t.*,
    CASE WHEN n_safe > n_unsafe THEN '安全' WHEN n_unsafe > n_safe THEN '不安全' END AS majority_label,
    abs(n_safe - n_unsafe) / n_votes AS margin,
    CASE
        WHEN n_abstain = 0 AND n_votes >= 2 AND (n_safe = 0 OR n_unsafe = 0) THEN 'agreed'
        WHEN n_safe <> n_unsafe AND abs(n_safe - n_unsafe) / n_votes >= p.min_margin
             AND n_abstain <= p.max_abstentions AND n_votes >= 2 THEN 'majority'
        ELSE 'hard'
    END AS vote_status,
    CASE
        WHEN n_abstain = 0 AND n_votes >= 2 AND (n_safe = 0 OR n_unsafe = 0) THEN NULL
        WHEN n_safe + n_unsafe = 0 THEN 'all_abstained'
        WHEN n_votes < 2 THEN 'single_vote'
        WHEN n_safe = n_unsafe THEN 'tie'
        WHEN n_abstain > p.max_abstentions THEN 'abstentions'
        WHEN abs(n_safe - n_unsafe) / n_votes < p.min_margin THEN 'disagreement'
    END AS hard_reason
FROM tallies t, policy p;

-- v_final_labels: one row per voted response; precedence human > adjudicated > majority.
CREATE OR REPLACE VIEW v_final_labels AS
WITH latest_human AS (
    SELECT response_id, arg_max(label, created_at) AS label
    FROM human_labels GROUP BY response_id
)
SELECT
    s.response_id,
    coalesce(h.label, a.label, s.majority_label) AS final_label,
    CASE
        WHEN h.label IS NOT NULL THEN 'human'
        WHEN a.label IS NOT NULL THEN 'adjudicated'
        WHEN s.majority_label IS NOT NULL THEN 'majority'
        ELSE 'none'
    END AS label_source,
    s.vote_status, s.hard_reason, s.majority_label, s.margin,
    s.n_votes, s.n_safe, s.n_unsafe, s.n_abstain,
    a.label AS adjudicated_label, h.label AS human_label
FROM v_vote_summary s
LEFT JOIN adjudications a USING (response_id)
LEFT JOIN latest_human h USING (response_id);

-- v_hard_samples: what stage 2 mines — judge disagreement, ties, abstentions, low margin.
CREATE OR REPLACE VIEW v_hard_samples AS
SELECT
    f.response_id, r.query_id, q.text AS query, r.text AS response, r.responder,
    q.scenario, q.subcategory, q.source, f.hard_reason, f.n_safe, f.n_unsafe, f.n_abstain,
    f.majority_label, f.adjudicated_label, f.human_label, f.final_label, f.label_source
FROM v_final_labels f
JOIN responses r USING (response_id)
JOIN queries q ON q.query_id = r.query_id
WHERE f.vote_status = 'hard';

-- v_judge_agreement: how often each judge agrees with the final label (abstentions count against).
CREATE OR REPLACE VIEW v_judge_agreement AS
SELECT
    v.judge, v.model,
    count(*) AS n,
    count(*) FILTER (WHERE v.label = f.final_label) AS n_agree,
    count(*) FILTER (WHERE v.label IS NULL) AS n_abstain,
    round(count(*) FILTER (WHERE v.label = f.final_label) / count(*), 4) AS agreement
FROM votes v
JOIN v_final_labels f USING (response_id)
WHERE f.final_label IS NOT NULL
GROUP BY v.judge, v.model;
