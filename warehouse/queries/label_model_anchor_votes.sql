-- The label model's votes on anchored responses: what correlated_judges needs to see which judges err
-- together, without reading every vote. Registered frame: anchors (item_id, label), read by
-- queries/label_model_anchors.sql.
SELECT v.item_id, v.judge, v.label
FROM v_label_model_votes v
JOIN anchors a USING (item_id)
ORDER BY v.item_id, v.judge
