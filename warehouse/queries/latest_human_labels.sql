-- Each response's latest human label and note, whoever gave it.
SELECT response_id, arg_max(label, created_at) AS label, arg_max(note, created_at) AS note
FROM human_labels GROUP BY response_id
