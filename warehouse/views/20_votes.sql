-- v_vote_summary: the majority vote per response, and its status.
--   pending  a judge's vote is missing: its call failed (outage, retries spent) or was never made. A
--            pending response is not settled: no majority, not hard, not adjudicated, not split, until a
--            later run gets that vote. Judges counted: settings 'vote.judges' (a JSON list of judge
--            models, written by every run from its config: roles.judges less vote.drop_judges); votes of
--            other models are ignored. Without that setting every stored judge counts.
--   agreed   every judge answered and all gave the same label (stage-1 pretrain data)
--   majority one label wins with margin >= settings 'vote.min_margin' and abstentions <=
--            'vote.max_abstentions'; margin = |#安全 - #不安全| / #votes
--   hard     anything else; hard_reason says why, first match of: all_abstained, single_vote, tie,
--            disagreement (both labels voted, margin below min_margin), controversial_vote (a judge said
--            有争议), abstentions, low_margin, low_confidence (below)
-- With settings 'vote.method' = 'dawid_skene' (tasks/annotation/dawid_skene.py; the annotate flow writes
-- label_posteriors): an agreed or majority vote whose posterior confidence max(p, 1 - p) is below
-- 'vote.min_confidence' is hard (low_confidence), and where the vote is not hard majority_label is the
-- posterior's label (label_from_posterior true). p_unsafe is the posterior P(不安全), NULL otherwise.
-- An unparseable answer and a 有争议 vote are abstentions: they never count as either label
-- (n_controversial says how many of the abstentions were 有争议). A failed call is no vote at all.
CREATE OR REPLACE VIEW v_vote_summary AS
WITH policy AS (
    SELECT
        coalesce(max(CASE WHEN key = 'vote.min_margin' THEN TRY_CAST(value AS DOUBLE) END), 0.6) AS min_margin,
        coalesce(max(CASE WHEN key = 'vote.max_abstentions' THEN TRY_CAST(value AS INTEGER) END), 0) AS max_abstentions,
        max(CASE WHEN key = 'vote.judges' THEN TRY_CAST(value AS JSON) END)::VARCHAR[] AS judges,
        coalesce(max(CASE WHEN key = 'vote.method' THEN value END), 'majority') = 'dawid_skene' AS use_posterior,
        coalesce(max(CASE WHEN key = 'vote.min_confidence' THEN TRY_CAST(value AS DOUBLE) END), 0) AS min_confidence
    FROM settings
), counted AS (
    SELECT v.* FROM votes v, policy p WHERE p.judges IS NULL OR list_contains(p.judges, v.model)
), tallies AS (
    SELECT
        response_id,
        count(*) FILTER (WHERE status <> 'failed') AS n_votes,
        count(*) FILTER (WHERE status <> 'failed' AND label = '安全') AS n_safe,
        count(*) FILTER (WHERE status <> 'failed' AND label = '不安全') AS n_unsafe,
        count(*) FILTER (WHERE status <> 'failed' AND (label IS NULL OR label NOT IN ('安全', '不安全'))) AS n_abstain,
        count(*) FILTER (WHERE status <> 'failed' AND label = '有争议') AS n_controversial,
        count(*) FILTER (WHERE status = 'failed') AS n_failed,
        list(judge ORDER BY judge) FILTER (WHERE status <> 'failed') AS judges
    FROM counted
    GROUP BY response_id
), statuses AS (
    SELECT
        t.*, p.min_margin, p.use_posterior, p.min_confidence,
        CASE WHEN n_safe > n_unsafe THEN '安全' WHEN n_unsafe > n_safe THEN '不安全' END AS majority_label,
        abs(n_safe - n_unsafe) / nullif(n_votes, 0) AS margin,
        CASE
            WHEN n_failed > 0 OR n_votes < coalesce(len(p.judges), 0) THEN 'pending'
            WHEN n_abstain = 0 AND n_votes >= 2 AND (n_safe = 0 OR n_unsafe = 0) THEN 'agreed'
            WHEN n_safe <> n_unsafe AND abs(n_safe - n_unsafe) / n_votes >= p.min_margin
                 AND n_abstain <= p.max_abstentions AND n_votes >= 2 THEN 'majority'
            ELSE 'hard'
        END AS vote_status
    FROM tallies t, policy p
), weighed AS (
    SELECT
        s.* REPLACE (
            CASE WHEN s.vote_status IN ('agreed', 'majority') AND lp.p_unsafe IS NOT NULL
                      AND greatest(lp.p_unsafe, 1 - lp.p_unsafe) < s.min_confidence THEN 'hard'
                 ELSE s.vote_status END AS vote_status),
        s.vote_status AS vote_status_by_count,
        lp.p_unsafe
    FROM statuses s
    LEFT JOIN label_posteriors lp ON s.use_posterior AND lp.response_id = s.response_id
)
SELECT
    response_id, n_votes, n_safe, n_unsafe, n_abstain, n_controversial, n_failed, judges,
    CASE
        WHEN vote_status = 'pending' THEN NULL
        WHEN vote_status <> 'hard' AND p_unsafe IS NOT NULL THEN CASE WHEN p_unsafe > 0.5 THEN '不安全' ELSE '安全' END
        ELSE majority_label
    END AS majority_label,
    margin, vote_status,
    CASE
        WHEN vote_status <> 'hard' THEN NULL
        WHEN vote_status_by_count <> 'hard' THEN 'low_confidence'
        WHEN n_safe + n_unsafe = 0 THEN 'all_abstained'
        WHEN n_votes < 2 THEN 'single_vote'
        WHEN n_safe = n_unsafe THEN 'tie'
        WHEN n_safe > 0 AND n_unsafe > 0 AND margin < min_margin THEN 'disagreement'
        WHEN n_controversial > 0 THEN 'controversial_vote'
        WHEN n_abstain > 0 THEN 'abstentions'
        ELSE 'low_margin'
    END AS hard_reason,
    p_unsafe,
    vote_status NOT IN ('pending', 'hard') AND p_unsafe IS NOT NULL AS label_from_posterior
FROM weighed;

-- v_guard_disagreements: warehouse samples where a stage-1 guard's prediction (the evaluation flow's
-- `predictions` with benchmark = 'warehouse', item_id = response_id) disagrees with the judges'
-- majority or with the final label. Compared with both so the pool is stable: once the adjudicator
-- or a human sides with the guard, the sample stays hard (the judges were wrong; still a hard sample).
-- An unparseable guard answer (label NULL) is no disagreement.
CREATE OR REPLACE VIEW v_guard_disagreements AS
WITH latest_human AS (
    SELECT response_id, arg_max(label, created_at) AS label FROM human_labels GROUP BY response_id
)
SELECT
    p.item_id AS response_id, p.guard, p.label AS guard_label, s.majority_label,
    coalesce(h.label, CASE WHEN a.label IN ('安全', '不安全') THEN a.label END, s.majority_label) AS settled_label,
    p.run_id
FROM predictions p
JOIN v_vote_summary s ON s.response_id = p.item_id
LEFT JOIN adjudications a ON a.response_id = p.item_id
LEFT JOIN latest_human h ON h.response_id = p.item_id
WHERE p.benchmark = 'warehouse' AND p.label IN ('安全', '不安全')
  AND (p.label IS DISTINCT FROM s.majority_label
       OR p.label IS DISTINCT FROM coalesce(h.label, CASE WHEN a.label IN ('安全', '不安全') THEN a.label END,
                                            s.majority_label));

-- v_final_labels: one row per voted response; precedence human > adjudicated > majority (or, with
--   vote.method dawid_skene, the posterior: label_source 'posterior'). A pending
--   vote (a judge's vote missing) settles nothing: final_label NULL, label_source 'pending', unless a
--   human labelled the sample.
--   vote_status: the vote's status, or 'hard' when a guard disagrees (hard_reason then names the guards:
--   'guard_disagreement:<guard>[,<guard>…]'; on a sample the vote already made hard the vote's reason
--   stays and disagreeing_guards lists the guards).
--   An adjudicator's 有争议 or unreadable answer settles nothing: the majority stands (label_source
--   'majority') until a human labels the sample. With settings 'vote.controversial' on, persistent
--   disagreement (both labels voted, or a 有争议 vote, and no decisive adjudication or human label)
--   gets final_label 有争议 (label_source 'controversial'), and an adjudicator's 有争议 is final.
CREATE OR REPLACE VIEW v_final_labels AS
WITH policy AS (
    SELECT coalesce(max(CASE WHEN key = 'vote.controversial' THEN TRY_CAST(value AS BOOLEAN) END), false)
               AS controversial
    FROM settings
), latest_human AS (
    SELECT response_id, arg_max(label, created_at) AS label
    FROM human_labels GROUP BY response_id
), guards AS (
    SELECT response_id, string_agg(guard, ',' ORDER BY guard) AS disagreeing_guards
    FROM v_guard_disagreements GROUP BY response_id
), decided AS (
    SELECT
        s.*, a.label AS adjudicated_label, h.label AS human_label, g.disagreeing_guards,
        CASE
            WHEN h.label IS NOT NULL THEN 'human'
            WHEN s.vote_status = 'pending' THEN 'pending'
            WHEN a.label IN ('安全', '不安全') THEN 'adjudicated'
            WHEN a.label = '有争议' AND p.controversial THEN 'adjudicated'
            WHEN p.controversial AND s.vote_status = 'hard'
                 AND ((s.n_safe > 0 AND s.n_unsafe > 0) OR s.n_controversial > 0) THEN 'controversial'
            WHEN s.majority_label IS NOT NULL AND s.label_from_posterior THEN 'posterior'
            WHEN s.majority_label IS NOT NULL THEN 'majority'
            ELSE 'none'
        END AS label_source
    FROM v_vote_summary s
    CROSS JOIN policy p
    LEFT JOIN adjudications a USING (response_id)
    LEFT JOIN latest_human h USING (response_id)
    LEFT JOIN guards g USING (response_id)
)
SELECT
    response_id,
    CASE label_source
        WHEN 'human' THEN human_label
        WHEN 'adjudicated' THEN adjudicated_label
        WHEN 'controversial' THEN '有争议'
        WHEN 'majority' THEN majority_label
        WHEN 'posterior' THEN majority_label
    END AS final_label,
    label_source,
    CASE WHEN disagreeing_guards IS NOT NULL AND vote_status <> 'pending' THEN 'hard' ELSE vote_status END
        AS vote_status,
    CASE
        WHEN vote_status = 'hard' THEN hard_reason
        WHEN disagreeing_guards IS NOT NULL AND vote_status <> 'pending'
            THEN 'guard_disagreement:' || disagreeing_guards
    END AS hard_reason,
    majority_label, margin, n_votes, n_safe, n_unsafe, n_abstain, n_controversial, n_failed,
    adjudicated_label, human_label, disagreeing_guards, p_unsafe
FROM decided;

-- v_hard_samples: what stage 2 mines — judge disagreement, ties, abstentions, low margin, guard disagreement.
CREATE OR REPLACE VIEW v_hard_samples AS
SELECT
    f.response_id, r.query_id, q.text AS query, r.text AS response, r.responder,
    q.scenario, q.subcategory, q.source, f.hard_reason, f.disagreeing_guards, f.n_safe, f.n_unsafe, f.n_abstain,
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

-- v_label_model_votes: the votes the label model (vote.method dawid_skene) learns from: the counted
-- judges' 安全/不安全 votes on every response whose vote is complete (not pending). Abstentions are no
-- votes here. Read in keyset pages (queries/label_model_votes.sql) and, on anchored responses only, to
-- find correlated judges (queries/label_model_anchor_votes.sql).
CREATE OR REPLACE VIEW v_label_model_votes AS
SELECT v.response_id AS item_id, v.judge, any_value(v.label) AS label
FROM votes v
JOIN v_vote_summary s USING (response_id)
WHERE s.vote_status <> 'pending' AND v.status = 'ok' AND v.label IN ('安全', '不安全')
  AND list_contains(s.judges, v.judge)
GROUP BY v.response_id, v.judge;

-- v_label_posteriors: the Dawid-Skene posterior P(不安全) per response (the review page shows it), and
-- the label model's estimate of every judge (latest fit; see tasks/annotation/dawid_skene.py).
CREATE OR REPLACE VIEW v_label_posteriors AS
SELECT response_id, p_unsafe, CASE WHEN p_unsafe > 0.5 THEN '不安全' ELSE '安全' END AS posterior_label,
       greatest(p_unsafe, 1 - p_unsafe) AS confidence, method, run_id, created_at
FROM label_posteriors;

CREATE OR REPLACE VIEW v_label_model_judges AS
SELECT judge, votes, accuracy, recall_safe, recall_unsafe, method, run_id
FROM label_model_judges
WHERE run_id = (SELECT arg_max(run_id, created_at) FROM label_model_judges)
ORDER BY judge;

CREATE OR REPLACE VIEW v_label_model_confusion AS
SELECT judge, true_label, judge_label, round(probability, 4) AS probability,
       round(expected_count, 1) AS expected_count, method, run_id
FROM label_model_confusion
WHERE run_id = (SELECT arg_max(run_id, created_at) FROM label_model_confusion)
ORDER BY judge, true_label, judge_label;
