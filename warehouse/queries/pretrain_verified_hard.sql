-- Pretrain queries that have come to hold a hard sample settled by an adjudicator or a human (a guard
-- disagreed with the judges after the split: `libra run mine`), with every other pretrain query of
-- their near-duplicate clusters, so a cluster never spans two splits. The split flow moves them to
-- finetune (tasks/data/splits.py: move_verified_hard). reason: the sample's hard reason.
WITH verified AS (
    SELECT r.query_id, min(f.hard_reason) AS reason
    FROM v_final_labels f
    JOIN responses r USING (response_id)
    JOIN splits s ON s.query_id = r.query_id AND s.split = 'pretrain'
    WHERE f.vote_status = 'hard' AND f.label_source IN ('adjudicated', 'human')
    GROUP BY r.query_id
), clusters AS (
    SELECT coalesce(d.cluster_id, v.query_id) AS cluster_id, min(v.reason) AS reason
    FROM verified v LEFT JOIN dedup d USING (query_id)
    GROUP BY ALL
)
SELECT s.query_id, 'pretrain' AS from_split, 'finetune' AS to_split, c.reason
FROM splits s
LEFT JOIN dedup d USING (query_id)
JOIN clusters c ON c.cluster_id = coalesce(d.cluster_id, s.query_id)
WHERE s.split = 'pretrain'
ORDER BY s.query_id
