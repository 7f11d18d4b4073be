-- The values of the review page's filters (name, value), from every labelled response of v_dataset.
SELECT DISTINCT 'scenario' AS name, scenario AS value FROM v_dataset
UNION ALL SELECT DISTINCT 'subcategory', subcategory FROM v_dataset
UNION ALL SELECT DISTINCT 'hard_reason', split_part(hard_reason, ':', 1) FROM v_dataset WHERE hard_reason IS NOT NULL
UNION ALL SELECT DISTINCT 'source', source FROM v_dataset
UNION ALL SELECT DISTINCT 'label', final_label FROM v_dataset
