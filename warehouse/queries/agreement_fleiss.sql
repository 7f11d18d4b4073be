-- Fleiss' kappa over the responses every rater labelled, overall ('(all)') and per scenario.
SELECT scenario, n_items, n_excluded, raters, fleiss_kappa
FROM v_fleiss_kappa ORDER BY scenario
