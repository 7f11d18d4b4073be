-- Cohen's kappa of each judge pair, overall ('(all)') and per scenario (the annotate report).
SELECT scenario, judge_a, judge_b, n, observed, kappa
FROM v_judge_kappa ORDER BY scenario, judge_a, judge_b
