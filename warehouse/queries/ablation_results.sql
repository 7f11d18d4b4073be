-- The figures of one grid's cells, for its report (tasks/training/ablation.py).
SELECT cell_id, coordinates, is_reference, guard, benchmark, source, n, accuracy, f1_unsafe, f1_safe,
       parse_failure_rate
FROM v_ablation_results
WHERE grid = $grid
ORDER BY cell_id, benchmark, source = 'Average', source;
