-- The coverage report's subcategory table (tasks/reports/coverage.py).
SELECT * FROM v_coverage_subcategory ORDER BY scenario, subcategory
