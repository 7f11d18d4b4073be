-- Responses per vote status (v_final_labels), for the annotate run's summary.
SELECT vote_status, count(*) AS n FROM v_final_labels GROUP BY 1
