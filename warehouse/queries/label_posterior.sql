-- The label model's posterior that a response is unsafe (NULL: none). Parameters: ? (response_id).
SELECT max(p_unsafe) FROM v_label_posteriors WHERE response_id = ?
