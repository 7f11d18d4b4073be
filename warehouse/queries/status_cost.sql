-- `libra status`: LLM cost per currency (endpoint prices from the config; currency NULL = calls without a price).
SELECT currency, calls, cost, cost_per_settled_label, cost_per_training_example
FROM v_cost_per_label
ORDER BY currency NULLS LAST
