-- Known labels that anchor the label model: the latest human label, else a decisive adjudication.
WITH latest_human AS (
    SELECT response_id, arg_max(label, created_at) AS label FROM human_labels GROUP BY response_id
)
SELECT response_id AS item_id, coalesce(h.label, a.label) AS label
FROM latest_human h
FULL JOIN (SELECT response_id, label FROM adjudications WHERE label IN ('安全', '不安全')) a USING (response_id)
WHERE coalesce(h.label, a.label) IN ('安全', '不安全')
ORDER BY item_id
