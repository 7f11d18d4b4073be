-- How many queries the dedup stage has not decided yet.
SELECT count(*) FROM queries ANTI JOIN dedup USING (query_id)
