-- 009: dedup keeps each dropped query's similarity to the kept query it was dropped for (tasks/dedup/near.py:
-- greedy, first kept text wins), so v_dedup_clusters can show how alike a cluster's members really are.
-- NULL for kept queries and for decisions made before this column (by union-find clustering).
ALTER TABLE dedup ADD COLUMN similarity DOUBLE;
