-- Undo a review session's label of an item. Parameters: ? (response_id), ? (run_id).
DELETE FROM human_labels WHERE response_id = ? AND run_id = ?
