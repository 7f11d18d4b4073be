-- The official figures of the guards one eval run asked. Parameters: ? (benchmark), ? (list of guard ids).
SELECT * FROM v_eval_metrics WHERE benchmark = ? AND list_contains(?, guard) ORDER BY guard
