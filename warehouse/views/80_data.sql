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
