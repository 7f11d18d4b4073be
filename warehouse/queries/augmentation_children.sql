-- (parent, method) pairs that already have a stored augmented child, among the parents of a page.
-- Registered frame: chosen (query_id).
SELECT DISTINCT q.parent_id, q.method
FROM queries q
JOIN chosen c ON q.parent_id = c.query_id
