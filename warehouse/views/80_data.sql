-- v_imported_queries: imported real queries per dataset x mapped scenario x subcategory x intended label.
CREATE OR REPLACE VIEW v_imported_queries AS
SELECT provenance->>'dataset' AS dataset, coalesce(scenario, '(none)') AS scenario, subcategory,
       intended_label, count(*) AS n
FROM queries
WHERE method = 'import'
GROUP BY ALL;

-- v_import_batches: one row per import — files, records read, good, new, duplicates, rejected.
CREATE OR REPLACE VIEW v_import_batches AS
SELECT batch_id, dataset, json_array_length(files) AS n_files, n_records, n_good, n_new, n_duplicates,
       n_rejected, reject_file, mapping, run_id, created_at
FROM import_batches;

-- v_split_summary: per split x scenario x label x source — queries, labelled responses, hard samples.
CREATE OR REPLACE VIEW v_split_summary AS
SELECT split, coalesce(scenario, '(none)') AS scenario, final_label AS label, source,
       count(DISTINCT query_id) AS queries, count(*) AS responses,
       count(*) FILTER (WHERE vote_status = 'hard') AS hard
FROM v_dataset
WHERE split IS NOT NULL
GROUP BY ALL;

-- v_export_versions: one row per export folder with its row counts per split.
CREATE OR REPLACE VIEW v_export_versions AS
SELECT export_id, path, n_rows,
       CAST(manifest->>'$.counts.pretrain' AS INTEGER) AS pretrain,
       CAST(manifest->>'$.counts.finetune' AS INTEGER) AS finetune,
       CAST(manifest->>'$.counts.eval' AS INTEGER) AS eval,
       manifest_sha256, run_id, created_at
FROM export_versions;

-- v_export_rows: the rows an export writes, every split, with every metadata column and the analysis
-- that supports the final label: the human note, else the adjudicator's analysis, else the first
-- agreeing judge's analysis. A hard (disputed) response leaves only with an adjudicated or human label;
-- queries that leak a benchmark question (v_contaminated) never leave in a training split. Read per split
-- in keyset pages (queries/export_page.sql) and as thin columns (queries/export_index.sql).
CREATE OR REPLACE VIEW v_export_rows AS
WITH agreeing AS (
    SELECT v.response_id, arg_min(v.analysis, v.judge) AS analysis
    FROM votes v JOIN v_final_labels f USING (response_id)
    WHERE v.label = f.final_label AND v.analysis IS NOT NULL
    GROUP BY v.response_id
), human AS (
    SELECT response_id, arg_max(note, created_at) AS note FROM human_labels GROUP BY response_id
)
SELECT
    ds.response_id, ds.query_id, ds.query, ds.response, ds.responder, ds.responder_model,
    ds.scenario, ds.subcategory, ds.task_type, ds.source, ds.method, ds.intended_label,
    ds.final_label AS label, ds.label_source, ds.vote_status, ds.hard_reason, ds.margin,
    f.n_votes, f.n_safe, f.n_unsafe, f.n_abstain, f.majority_label, f.adjudicated_label, f.human_label,
    ds.split, ds.dedup_cluster,
    coalesce(nullif(h.note, ''), CASE WHEN a.label = ds.final_label THEN a.analysis END, g.analysis, '') AS analysis,
    q.provenance, q.run_id AS query_run_id, r.run_id AS response_run_id
FROM v_dataset ds
JOIN v_final_labels f USING (response_id)
JOIN queries q USING (query_id)
JOIN responses r USING (response_id)
LEFT JOIN agreeing g USING (response_id)
LEFT JOIN adjudications a USING (response_id)
LEFT JOIN human h USING (response_id)
WHERE ds.split IS NOT NULL AND ds.final_label IN ('安全', '不安全')
  AND (ds.vote_status <> 'hard' OR ds.label_source IN ('adjudicated', 'human'))
  AND (ds.split = 'eval' OR ds.query_id NOT IN (SELECT query_id FROM v_contaminated));
