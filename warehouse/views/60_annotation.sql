-- Judge agreement (how far the labels can be trusted) and prompt-level labels.
-- Every agreement view has a `scenario` column: '(all)' is the whole warehouse, '(none)' queries
-- without a scenario. tasks/reports/agreement.py computes the same figures in numpy for the run artifacts;
-- tests check both against scikit-learn and statsmodels.

-- _labelled_votes: every vote with its query's scenario; label NULL = abstention (failed, unreadable).
CREATE OR REPLACE VIEW _labelled_votes AS
SELECT v.response_id, v.judge, v.model,
       CASE WHEN v.label IN ('安全', '不安全', '有争议') THEN v.label END AS label,
       coalesce(q.scenario, '(none)') AS scenario
FROM votes v
JOIN responses r USING (response_id)
JOIN queries q USING (query_id);

-- v_judge_agreement_by_scenario: v_judge_agreement per scenario (abstentions count against).
CREATE OR REPLACE VIEW v_judge_agreement_by_scenario AS
WITH scoped AS (
    SELECT l.*, f.final_label FROM _labelled_votes l JOIN v_final_labels f USING (response_id)
    WHERE f.final_label IS NOT NULL
), both_scopes AS (
    SELECT * REPLACE ('(all)' AS scenario) FROM scoped UNION ALL SELECT * FROM scoped
)
SELECT scenario, judge, model, count(*) AS n,
       count(*) FILTER (WHERE label = final_label) AS n_agree,
       count(*) FILTER (WHERE label IS NULL) AS n_abstain,
       round(count(*) FILTER (WHERE label = final_label) / count(*), 4) AS agreement
FROM both_scopes
GROUP BY ALL
ORDER BY scenario, judge;

-- v_judge_confusion: per judge pair (judge_a < judge_b), how their labels cross; an abstention is '(弃权)'.
CREATE OR REPLACE VIEW v_judge_confusion AS
WITH pairs AS (
    SELECT a.scenario, a.judge AS judge_a, b.judge AS judge_b,
           coalesce(a.label, '(弃权)') AS label_a, coalesce(b.label, '(弃权)') AS label_b
    FROM _labelled_votes a
    JOIN _labelled_votes b ON a.response_id = b.response_id AND a.judge < b.judge
)
SELECT scenario, judge_a, judge_b, label_a, label_b, count(*) AS n
FROM (SELECT * REPLACE ('(all)' AS scenario) FROM pairs UNION ALL SELECT * FROM pairs)
GROUP BY ALL
ORDER BY scenario, judge_a, judge_b, label_a, label_b;

-- v_judge_kappa: Cohen's kappa per judge pair over the responses both labelled (abstentions left out):
-- kappa = (p_o - p_e) / (1 - p_e), p_o the share of equal labels, p_e = sum_k p_a(k) p_b(k).
-- NULL when p_e = 1 (both judges gave one and the same label throughout: kappa is undefined).
CREATE OR REPLACE VIEW v_judge_kappa AS
WITH pairs AS (
    SELECT a.scenario, a.judge AS judge_a, b.judge AS judge_b, a.label AS label_a, b.label AS label_b
    FROM _labelled_votes a
    JOIN _labelled_votes b ON a.response_id = b.response_id AND a.judge < b.judge
    WHERE a.label IS NOT NULL AND b.label IS NOT NULL
), scoped AS (
    SELECT * REPLACE ('(all)' AS scenario) FROM pairs UNION ALL SELECT * FROM pairs
), totals AS (
    SELECT scenario, judge_a, judge_b, count(*) AS n, avg(CASE WHEN label_a = label_b THEN 1.0 ELSE 0.0 END) AS p_o
    FROM scoped GROUP BY ALL
), margin_a AS (
    SELECT scenario, judge_a, judge_b, label_a AS label, count(*) AS n_a FROM scoped GROUP BY ALL
), margin_b AS (
    SELECT scenario, judge_a, judge_b, label_b AS label, count(*) AS n_b FROM scoped GROUP BY ALL
), chance AS (
    SELECT a.scenario, a.judge_a, a.judge_b, sum(a.n_a * coalesce(b.n_b, 0)) AS products
    FROM margin_a a LEFT JOIN margin_b b USING (scenario, judge_a, judge_b, label)
    GROUP BY ALL
)
SELECT t.scenario, t.judge_a, t.judge_b, t.n,
       round(t.p_o, 4) AS observed, round(c.products / (t.n * t.n), 4) AS expected,
       CASE WHEN c.products < t.n * t.n
            THEN round((t.p_o - c.products / (t.n * t.n)) / (1 - c.products / (t.n * t.n)), 4) END AS kappa
FROM totals t JOIN chance c USING (scenario, judge_a, judge_b)
ORDER BY t.scenario, t.judge_a, t.judge_b;

-- v_fleiss_kappa: Fleiss' kappa over the responses that every rater labelled (raters = the most
-- labels any response has; responses with an abstention or a missing judge are left out and counted).
-- P_i = (sum_k n_ik^2 - R) / (R (R - 1)), P_bar = mean P_i, p_k = sum_i n_ik / (N R),
-- P_e = sum_k p_k^2, kappa = (P_bar - P_e) / (1 - P_e); NULL when P_e = 1 or fewer than 2 raters.
CREATE OR REPLACE VIEW v_fleiss_kappa AS
WITH per_item AS (
    SELECT response_id, scenario, count(label) AS n_labels FROM _labelled_votes GROUP BY ALL
), raters AS (
    SELECT max(n_labels) AS r FROM per_item
), complete AS (
    SELECT l.response_id, l.label, l.scenario
    FROM _labelled_votes l JOIN per_item p USING (response_id), raters
    WHERE p.n_labels = raters.r AND l.label IS NOT NULL AND raters.r >= 2
), scoped AS (
    SELECT * REPLACE ('(all)' AS scenario) FROM complete UNION ALL SELECT * FROM complete
), cells AS (
    SELECT scenario, response_id, label, count(*) AS c FROM scoped GROUP BY ALL
), items AS (
    SELECT scenario, response_id, (sum(c * c) - r) / (r * (r - 1)) AS p_i
    FROM cells, raters GROUP BY scenario, response_id, r
), agreement AS (
    SELECT scenario, count(*) AS n_items, avg(p_i) AS p_bar FROM items GROUP BY scenario
), categories AS (
    SELECT scenario, label, sum(c) AS total FROM cells GROUP BY ALL
), chance AS (
    SELECT k.scenario, sum(power(k.total / (a.n_items * r), 2)) AS p_e
    FROM categories k JOIN agreement a USING (scenario), raters
    GROUP BY k.scenario
), excluded AS (
    SELECT s.scenario, count(*) AS n_excluded
    FROM (SELECT * REPLACE ('(all)' AS scenario) FROM per_item UNION ALL SELECT * FROM per_item) s, raters
    WHERE s.n_labels < raters.r
    GROUP BY s.scenario
)
SELECT a.scenario, a.n_items, coalesce(x.n_excluded, 0) AS n_excluded, r AS raters,
       round(a.p_bar, 4) AS observed, round(c.p_e, 4) AS expected,
       CASE WHEN c.p_e < 1 THEN round((a.p_bar - c.p_e) / (1 - c.p_e), 4) END AS fleiss_kappa
FROM agreement a JOIN chance c USING (scenario) LEFT JOIN excluded x USING (scenario), raters
ORDER BY a.scenario;

-- v_prompt_labels: per query, the judges' prompt-level labels (was the query itself harmful?) and
-- their majority; NULL majority on a tie or when no judge gave one.
CREATE OR REPLACE VIEW v_prompt_labels AS
SELECT
    p.query_id, q.text AS query, q.scenario, q.intended_label,
    count(*) AS n_calls,
    count(*) FILTER (WHERE p.label = '不安全') AS n_unsafe,
    count(*) FILTER (WHERE p.label = '安全') AS n_safe,
    CASE
        WHEN count(*) FILTER (WHERE p.label = '不安全') > count(*) FILTER (WHERE p.label = '安全') THEN '不安全'
        WHEN count(*) FILTER (WHERE p.label = '安全') > count(*) FILTER (WHERE p.label = '不安全') THEN '安全'
    END AS majority_label
FROM prompt_labels p
JOIN queries q USING (query_id)
GROUP BY p.query_id, q.text, q.scenario, q.intended_label;
