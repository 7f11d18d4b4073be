-- Whether a review session labelled an item. Parameters: ? (response_id), ? (run_id).
SELECT count(*) FROM human_labels WHERE response_id = ? AND run_id = ?
