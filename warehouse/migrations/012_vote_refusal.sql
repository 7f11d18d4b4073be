-- 012: judges also say whether the response is a refusal (WildGuard's third task). NULL: the judge
-- did not say (an older prompt, an unreadable answer). v_dataset carries the judges' majority.
ALTER TABLE votes ADD COLUMN is_refusal BOOLEAN;
