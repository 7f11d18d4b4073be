-- `libra compare`: every guard evaluated on one benchmark, best F1 (unsafe) first. Parameter: $benchmark.
SELECT guard, stage, n, accuracy, f1_unsafe, f1_safe, parse_failure_rate, training_run_id
FROM v_eval_comparison
WHERE benchmark = $benchmark
ORDER BY f1_unsafe DESC, guard
