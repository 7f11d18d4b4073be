-- The time a review session's label of an item took. Parameters: ? (response_id), ? (run_id).
SELECT seconds_spent FROM human_labels WHERE response_id = ? AND run_id = ?
