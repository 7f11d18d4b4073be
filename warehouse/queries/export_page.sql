-- One keyset page of a split's export rows (v_export_rows), in response_id order: the export reads a
-- split page by page so that no split is held whole (tasks/data/splits.py: export_dataset).
-- Parameters: $split, $after_response_id, $page_size.
SELECT * FROM v_export_rows
WHERE split = $split AND response_id > $after_response_id
ORDER BY response_id
LIMIT $page_size
