-- v_coverage: synthetic queries per scenario x subcategory x task type x method x intended label
-- (seeds, benign look-alikes and every augmentation method), and how many survived dedup.
CREATE OR REPLACE VIEW v_coverage AS
SELECT q.scenario, q.subcategory, q.task_type, q.method, q.intended_label,
       count(*) AS n, count(*) FILTER (WHERE d.kept) AS n_kept
FROM queries q
LEFT JOIN dedup d USING (query_id)
WHERE q.source = 'synthetic'
GROUP BY ALL;

-- v_coverage_targets: stored seed/benign queries against the latest synthesis plan, per cell
-- (scenario x subcategory x task type x intent). A planned cell without queries shows n = 0.
CREATE OR REPLACE VIEW v_coverage_targets AS
WITH counts AS (
    SELECT scenario, subcategory, task_type, intended_label AS intent, count(*) AS n
    FROM queries
    WHERE source = 'synthetic' AND method IN ('seed', 'benign')
    GROUP BY ALL
)
SELECT scenario, subcategory, task_type, intent, coalesce(c.n, 0) AS n, t.target,
       coalesce(c.n, 0) - coalesce(t.target, 0) AS surplus
FROM synthesis_targets t
FULL JOIN counts c USING (scenario, subcategory, task_type, intent);

-- v_coverage_subcategory: one row per subcategory: harmful seeds and benign look-alikes against their
-- targets, the benign ratio, task types reached, augmented children, and the deviation from target.
CREATE OR REPLACE VIEW v_coverage_subcategory AS
WITH cells AS (
    SELECT scenario, subcategory,
           CAST(sum(n) FILTER (WHERE intent = 'harmful') AS BIGINT) AS harmful,
           CAST(sum(target) FILTER (WHERE intent = 'harmful') AS BIGINT) AS harmful_target,
           CAST(sum(n) FILTER (WHERE intent = 'benign') AS BIGINT) AS benign,
           CAST(sum(target) FILTER (WHERE intent = 'benign') AS BIGINT) AS benign_target,
           count(DISTINCT task_type) FILTER (WHERE n > 0) AS task_types_reached,
           count(DISTINCT task_type) FILTER (WHERE target > 0) AS task_types_planned
    FROM v_coverage_targets
    GROUP BY ALL
), children AS (
    SELECT scenario, subcategory, count(*) AS augmented
    FROM queries WHERE source = 'synthetic' AND parent_id IS NOT NULL
    GROUP BY ALL
)
SELECT c.scenario, c.subcategory,
       coalesce(c.harmful, 0) AS harmful, c.harmful_target,
       coalesce(c.benign, 0) AS benign, c.benign_target,
       round(coalesce(c.benign, 0) / nullif(coalesce(c.harmful, 0), 0), 3) AS benign_ratio,
       c.task_types_reached, c.task_types_planned,
       coalesce(a.augmented, 0) AS augmented,
       round(coalesce(c.harmful, 0) / nullif(c.harmful_target, 0) - 1, 3) AS deviation
FROM cells c
LEFT JOIN children a USING (scenario, subcategory);

-- v_rejections: generated items rejected by the quality gates, per run, stage and reason.
CREATE OR REPLACE VIEW v_rejections AS
SELECT g.run_id, g.stage, r.key AS reason, CAST(sum(CAST(r.value AS BIGINT)) AS BIGINT) AS n
FROM generation_calls g, json_each(g.rejected) r
GROUP BY ALL;

-- v_elements: the element library per subcategory and kind.
CREATE OR REPLACE VIEW v_elements AS
SELECT scenario, subcategory, kind, count(*) AS n, list(text ORDER BY text) AS texts
FROM elements
GROUP BY ALL;

-- v_translations: every translated record, English beside Chinese, with the dataset's own label.
CREATE OR REPLACE VIEW v_translations AS
SELECT p.dataset, p.source_row, p.query_id, tq.text AS query, tq.original_text AS query_en,
       p.response_id, tr.text AS response, tr.original_text AS response_en, p.label,
       tq.generator, tq.prompt_version, p.run_id
FROM translated_pairs p
JOIN translations tq ON tq.translation_id = p.query_translation_id
LEFT JOIN translations tr ON tr.translation_id = p.response_translation_id;
