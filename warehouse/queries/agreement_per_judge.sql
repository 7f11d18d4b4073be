-- Each judge's agreement with the final label, overall ('(all)') and per scenario (the annotate report).
SELECT scenario, judge, n, n_agree, n_abstain, agreement
FROM v_judge_agreement_by_scenario ORDER BY scenario, judge
