-- The wanted ids that a voted response has (what a human label may name). Frames: wanted(response_id).
SELECT f.response_id FROM v_final_labels f SEMI JOIN wanted w USING (response_id)
