-- `libra status`: rows per factory stage.
SELECT stage, n FROM v_stage_counts
