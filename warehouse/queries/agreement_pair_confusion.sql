-- The label confusion of each judge pair, overall ('(all)') and per scenario (the annotate report).
SELECT scenario, judge_a, judge_b, label_a, label_b, n
FROM v_judge_confusion ORDER BY scenario, judge_a, judge_b, label_a, label_b
