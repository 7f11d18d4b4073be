-- Every response's final label, for the agreement report.
SELECT response_id, final_label FROM v_final_labels
