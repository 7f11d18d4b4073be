-- The read-only queries `libra demo` suggests at its end: one per line, after a `-- title` line.
-- labels per scenario
SELECT scenario, final_label, count(*) AS n FROM v_dataset GROUP BY ALL ORDER BY ALL
-- hard samples and why
SELECT hard_reason, count(*) AS n FROM v_hard_samples GROUP BY ALL ORDER BY n DESC
-- LLM usage per endpoint
SELECT endpoint, sum(calls) AS calls, sum(retries) AS retries, sum(failures) AS failures, sum(prompt_tokens + completion_tokens) AS tokens FROM v_llm_usage GROUP BY ALL ORDER BY ALL
