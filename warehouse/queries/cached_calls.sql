-- The cache: the latest successful answer for each requested call key.
SELECT c.call_key, arg_max(c.response_text, c.created_at) AS response_text
FROM llm_calls c
JOIN wanted_keys w USING (call_key)
WHERE c.status = 'ok'
GROUP BY c.call_key
