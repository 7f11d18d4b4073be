-- The official figures per source of the guards one eval run asked. Parameters: ? (benchmark), ? (guard ids).
SELECT * FROM v_eval_source_metrics WHERE benchmark = ? AND list_contains(?, guard) ORDER BY guard, source
