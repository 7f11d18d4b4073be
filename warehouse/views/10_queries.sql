-- v_queries: one row per query with its dedup outcome. `kept` is NULL until the dedup stage saw it.
CREATE OR REPLACE VIEW v_queries AS
SELECT
    q.query_id, q.text, q.source, q.method, q.parent_id, q.scenario, q.subcategory, q.task_type,
    q.intended_label, q.generator, q.prompt_version, q.original_text,
    d.cluster_id AS dedup_cluster, d.kept, d.reason AS dedup_reason, d.matched_id AS dedup_matched_id,
    q.run_id, q.created_at
FROM queries q
LEFT JOIN dedup d USING (query_id);
