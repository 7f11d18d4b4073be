-- The coverage report's (scenario, subcategory, task type, ...) cells.
SELECT * FROM v_coverage ORDER BY ALL
