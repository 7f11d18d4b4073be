-- The eval flow's comparison report: every guard evaluated on one benchmark, every column of
-- v_eval_comparison, best F1 (unsafe) first. Parameter: ? (benchmark).
SELECT * FROM v_eval_comparison WHERE benchmark = ? ORDER BY f1_unsafe DESC, guard
