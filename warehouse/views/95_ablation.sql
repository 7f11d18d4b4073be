-- v_ablation_results: every ablation cell with its official figures (the "Average" line of each
-- benchmark, v_eval_metrics) and the same figures per benchmark source (v_eval_source_metrics).
CREATE OR REPLACE VIEW v_ablation_results AS
SELECT c.grid, c.cell_id, c.coordinates, c.is_reference, c.base_model, c.export_id, c.training_run_id,
       c.guard, m.benchmark, 'Average' AS source, m.n, m.accuracy, m.f1_unsafe, m.f1_safe,
       m.parse_failure_rate, c.created_at
FROM ablation_cells c
JOIN v_eval_metrics m ON m.guard = c.guard AND list_contains(CAST(c.benchmarks AS VARCHAR[]), m.benchmark)
UNION ALL
SELECT c.grid, c.cell_id, c.coordinates, c.is_reference, c.base_model, c.export_id, c.training_run_id,
       c.guard, s.benchmark, s.source, s.n, s.accuracy, s.f1_unsafe, s.f1_safe,
       s.parse_failure_rate, c.created_at
FROM ablation_cells c
JOIN v_eval_source_metrics s ON s.guard = c.guard AND list_contains(CAST(c.benchmarks AS VARCHAR[]), s.benchmark);
