-- Synthesis cells planned, and those planned with a target that reached at least one query.
SELECT (SELECT count(*) FROM synthesis_targets) AS planned,
       (SELECT count(*) FROM v_coverage_targets WHERE target > 0 AND n > 0) AS reached
