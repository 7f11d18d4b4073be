-- v_llm_usage: calls, retries, failures and tokens per endpoint and run (cache hits are not calls).
CREATE OR REPLACE VIEW v_llm_usage AS
SELECT
    run_id, endpoint, model,
    count(*) AS calls,
    sum(attempts - 1) AS retries,
    count(*) FILTER (WHERE status = 'failed') AS failures,
    sum(coalesce(prompt_tokens, 0)) AS prompt_tokens,
    sum(coalesce(completion_tokens, 0)) AS completion_tokens,
    round(avg(latency_ms), 1) AS mean_latency_ms,
    min(created_at) AS first_call, max(created_at) AS last_call
FROM llm_calls
GROUP BY run_id, endpoint, model;

-- v_token_cost: tokens per model over all runs.
CREATE OR REPLACE VIEW v_token_cost AS
SELECT model, count(*) AS calls, sum(coalesce(prompt_tokens, 0)) AS prompt_tokens,
       sum(coalesce(completion_tokens, 0)) AS completion_tokens
FROM llm_calls GROUP BY model;
