-- (parent, method) pairs that already have a stored augmented child.
SELECT DISTINCT parent_id, method
FROM queries
WHERE parent_id IS NOT NULL
