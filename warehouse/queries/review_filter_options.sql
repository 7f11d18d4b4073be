-- The values of the review page's filters (name, value), from every labelled response of v_dataset
-- (read once: the view aggregates every vote).
WITH d AS MATERIALIZED (
    SELECT scenario, subcategory, split_part(hard_reason, ':', 1) AS hard_reason, source, final_label FROM v_dataset
)
SELECT DISTINCT 'scenario' AS name, scenario AS value FROM d
UNION ALL SELECT DISTINCT 'subcategory', subcategory FROM d
UNION ALL SELECT DISTINCT 'hard_reason', hard_reason FROM d WHERE hard_reason IS NOT NULL
UNION ALL SELECT DISTINCT 'source', source FROM d
UNION ALL SELECT DISTINCT 'label', final_label FROM d
