-- Cells of a grid already trained and evaluated: a rerun skips them.
SELECT cell_id, export_id, training_run_id, guard FROM ablation_cells WHERE grid = $grid AND status = 'completed';
