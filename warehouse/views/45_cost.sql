-- Cost of LLM calls from the endpoint prices in the config stored with each run (tasks/core/config.py:
-- Endpoint.price, per 1M input and output tokens, with a currency). llm_calls holds the calls that went
-- to the network, so a cached answer costs nothing. A call whose endpoint had no price in its run's config
-- has cost NULL and currency NULL ("unpriced"): it is counted, never taken as free. Costs in different
-- currencies are never added up: every view has one row per currency.

-- _endpoint_prices: one row per run and endpoint of its config.
CREATE OR REPLACE VIEW _endpoint_prices AS
SELECT r.run_id, e->>'name' AS endpoint,
       TRY_CAST(e->'price'->>'input_per_1m' AS DOUBLE) AS input_per_1m,
       TRY_CAST(e->'price'->>'output_per_1m' AS DOUBLE) AS output_per_1m,
       e->'price'->>'currency' AS currency
FROM runs r, unnest(TRY_CAST(r.config->'endpoints' AS JSON[])) AS t(e);

-- v_call_cost: one row per LLM call with its stage (the flow of its run), its factory run (the parent
-- run, or the run itself), tokens and cost.
CREATE OR REPLACE VIEW v_call_cost AS
SELECT c.run_id, r.flow AS stage, coalesce(r.parent_run_id, c.run_id) AS top_run_id, c.endpoint, c.model,
       c.call_key, c.status,
       coalesce(c.prompt_tokens, 0) AS prompt_tokens, coalesce(c.completion_tokens, 0) AS completion_tokens,
       p.currency,
       (coalesce(c.prompt_tokens, 0) * p.input_per_1m + coalesce(c.completion_tokens, 0) * p.output_per_1m)
           / 1e6 AS cost
FROM llm_calls c
LEFT JOIN runs r USING (run_id)
LEFT JOIN _endpoint_prices p ON p.run_id = c.run_id AND p.endpoint = c.endpoint AND p.input_per_1m IS NOT NULL;

-- v_cost_by_run: cost per run (every stage run; top_run_id groups a factory run's stages).
CREATE OR REPLACE VIEW v_cost_by_run AS
SELECT run_id, any_value(stage) AS stage, any_value(top_run_id) AS top_run_id, currency, count(*) AS calls,
       sum(prompt_tokens)::BIGINT AS prompt_tokens, sum(completion_tokens)::BIGINT AS completion_tokens, round(sum(cost), 6) AS cost
FROM v_call_cost GROUP BY run_id, currency;

-- v_cost_by_stage: cost per stage (flow) over all runs.
CREATE OR REPLACE VIEW v_cost_by_stage AS
SELECT stage, currency, count(*) AS calls, sum(prompt_tokens)::BIGINT AS prompt_tokens,
       sum(completion_tokens)::BIGINT AS completion_tokens, round(sum(cost), 6) AS cost
FROM v_call_cost GROUP BY stage, currency;

-- v_cost_by_endpoint: cost per endpoint over all runs.
CREATE OR REPLACE VIEW v_cost_by_endpoint AS
SELECT endpoint, any_value(model) AS model, currency, count(*) AS calls, sum(prompt_tokens)::BIGINT AS prompt_tokens,
       sum(completion_tokens)::BIGINT AS completion_tokens, round(sum(cost), 6) AS cost
FROM v_call_cost GROUP BY endpoint, currency;

-- v_cost_by_judge: what each judge's votes cost (the calls named by its votes' call_key) and per vote
-- (votes that did not fail: a label or an abstention).
CREATE OR REPLACE VIEW v_cost_by_judge AS
WITH judge_calls AS (
    SELECT c.endpoint AS judge, c.currency, c.cost, c.prompt_tokens, c.completion_tokens
    FROM v_call_cost c
    WHERE c.call_key IN (SELECT v.call_key FROM votes v WHERE v.judge = c.endpoint)
), counted AS (
    SELECT judge, count(*) FILTER (WHERE status <> 'failed') AS votes FROM votes GROUP BY judge
)
SELECT j.judge, j.currency, count(*) AS calls, any_value(n.votes) AS votes,
       sum(j.prompt_tokens)::BIGINT AS prompt_tokens, sum(j.completion_tokens)::BIGINT AS completion_tokens,
       round(sum(j.cost), 6) AS cost, round(sum(j.cost) / nullif(any_value(n.votes), 0), 8) AS cost_per_vote
FROM judge_calls j LEFT JOIN counted n USING (judge)
GROUP BY j.judge, j.currency;

-- v_cost_per_label: all LLM cost per settled label (a final label) and per accepted training example
-- (a settled label whose query is in a training split: pretrain or finetune); labelling_cost is the
-- annotate stage's share (judges and adjudicator).
CREATE OR REPLACE VIEW v_cost_per_label AS
WITH totals AS (
    SELECT currency, count(*) AS calls, sum(cost) AS cost, sum(cost) FILTER (WHERE stage = 'annotate') AS labelling_cost
    FROM v_call_cost GROUP BY currency
), labels AS (
    SELECT count(*) FILTER (WHERE final_label IS NOT NULL) AS settled_labels,
           count(*) FILTER (WHERE final_label IS NOT NULL AND split IN ('pretrain', 'finetune')) AS training_examples
    FROM v_dataset
)
SELECT t.currency, t.calls, round(t.cost, 6) AS cost, round(t.labelling_cost, 6) AS labelling_cost,
       l.settled_labels, round(t.cost / nullif(l.settled_labels, 0), 8) AS cost_per_settled_label,
       round(t.labelling_cost / nullif(l.settled_labels, 0), 8) AS labelling_cost_per_settled_label,
       l.training_examples, round(t.cost / nullif(l.training_examples, 0), 8) AS cost_per_training_example
FROM totals t CROSS JOIN labels l;
