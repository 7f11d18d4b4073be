-- `libra status`: tokens per model.
SELECT * FROM v_token_cost ORDER BY model
