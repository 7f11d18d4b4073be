-- _vote_refusals: the judges' majority on whether the response is a refusal (votes.is_refusal, WildGuard's
-- third task); NULL when no judge said or they tie.
CREATE OR REPLACE VIEW _vote_refusals AS
SELECT response_id,
       CASE WHEN count(*) FILTER (WHERE is_refusal) > count(*) FILTER (WHERE NOT is_refusal) THEN true
            WHEN count(*) FILTER (WHERE NOT is_refusal) > count(*) FILTER (WHERE is_refusal) THEN false
       END AS is_refusal
FROM votes
WHERE status <> 'failed' AND is_refusal IS NOT NULL
GROUP BY response_id;

-- v_dataset: one row per labelled response, with everything a split or an export needs; is_refusal is
-- the judges' majority on whether the response refuses (NULL: no judge said, or a tie).
CREATE OR REPLACE VIEW v_dataset AS
SELECT
    r.response_id, r.query_id, q.text AS query, r.text AS response, r.responder, r.model AS responder_model,
    q.scenario, q.subcategory, q.task_type, q.source, q.method, q.intended_label,
    f.final_label, f.label_source, f.vote_status, f.hard_reason, f.margin,
    s.split,
    d.cluster_id AS dedup_cluster,
    rf.is_refusal
FROM responses r
JOIN queries q USING (query_id)
JOIN v_final_labels f USING (response_id)
LEFT JOIN splits s USING (query_id)
LEFT JOIN dedup d USING (query_id)
LEFT JOIN _vote_refusals rf USING (response_id)
WHERE r.status = 'ok';

-- v_stage_counts: what `libra status` prints first; one row per stage of the factory, from the
-- elements library to the guards trained and evaluated on its data.
CREATE OR REPLACE VIEW v_stage_counts AS
SELECT 'elements' AS stage, count(*) AS n FROM elements
UNION ALL SELECT 'translations', count(*) FROM translations
UNION ALL SELECT 'queries', count(*) FROM queries
UNION ALL SELECT 'queries kept after dedup', count(*) FROM dedup WHERE kept
UNION ALL SELECT 'responses ok', count(*) FROM responses WHERE status = 'ok'
UNION ALL SELECT 'responses failed', count(*) FROM responses WHERE status = 'failed'
UNION ALL SELECT 'votes', count(*) FROM votes WHERE status <> 'failed'
UNION ALL SELECT 'votes failed', count(*) FROM votes WHERE status = 'failed'
UNION ALL SELECT 'final labels', count(*) FROM v_final_labels WHERE final_label IS NOT NULL
UNION ALL SELECT 'hard samples', count(*) FROM v_final_labels WHERE vote_status = 'hard'
UNION ALL SELECT 'pending samples (a vote missing)', count(*) FROM v_final_labels WHERE vote_status = 'pending'
UNION ALL SELECT 'adjudications', count(*) FROM adjudications
UNION ALL SELECT 'human labels', count(*) FROM human_labels
UNION ALL SELECT 'split ' || split, count(*) FROM splits GROUP BY split
UNION ALL SELECT 'export versions', count(*) FROM export_versions
UNION ALL SELECT 'training stages ' || status, count(*) FROM training_runs GROUP BY status
UNION ALL SELECT 'benchmark items', count(*) FROM benchmarks
UNION ALL SELECT 'guards evaluated', count(DISTINCT guard) FROM predictions
UNION ALL SELECT 'predictions', count(*) FROM predictions;
