-- Human annotators (the review page, label sheets, Label Studio): how far they agree with each other.
-- An annotator's label for a response is their latest one; labels without an annotator name count as
-- one annotator, '(unnamed)'.

-- _annotator_labels: one row per (response, annotator): the annotator's latest label, note and time.
CREATE OR REPLACE VIEW _annotator_labels AS
SELECT response_id, coalesce(annotator, '(unnamed)') AS annotator,
       arg_max(label, created_at) AS label, arg_max(note, created_at) AS note,
       arg_max(seconds_spent, created_at) AS seconds_spent, max(created_at) AS labelled_at
FROM human_labels
GROUP BY response_id, coalesce(annotator, '(unnamed)');

-- v_annotator_agreement: per response that humans labelled, each annotator's label and their agreement:
-- pair_agreement = the share of annotator pairs that gave the same label, sum_k n_k (n_k - 1) / (n (n - 1))
-- (Fleiss' P_i); NULL with a single annotator. majority_label: the most given label, NULL on a tie.
CREATE OR REPLACE VIEW v_annotator_agreement AS
WITH cells AS (
    SELECT response_id, label, count(*) AS n FROM _annotator_labels GROUP BY response_id, label
), topped AS (
    SELECT *, max(n) OVER (PARTITION BY response_id) AS top FROM cells
), ranked AS (
    SELECT response_id, sum(n)::BIGINT AS n_annotators, count(*) AS n_distinct_labels,
           sum(n * (n - 1)) AS agreeing_pairs, count(*) FILTER (WHERE n = top) AS n_top,
           arg_max(label, n) AS top_label
    FROM topped GROUP BY response_id
)
SELECT r.response_id, r.n_annotators, r.n_distinct_labels,
       CASE WHEN r.n_annotators >= 2 THEN round(r.agreeing_pairs / (r.n_annotators * (r.n_annotators - 1)), 4) END
           AS pair_agreement,
       r.n_distinct_labels = 1 AS unanimous,
       CASE WHEN r.n_top = 1 THEN r.top_label END AS majority_label,
       (SELECT list({'annotator': a.annotator, 'label': a.label} ORDER BY a.annotator)
        FROM _annotator_labels a WHERE a.response_id = r.response_id) AS labels,
       (SELECT sum(a.seconds_spent) FROM _annotator_labels a WHERE a.response_id = r.response_id) AS seconds_spent
FROM ranked r;
