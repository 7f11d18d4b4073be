-- The registered benchmark names.
SELECT DISTINCT benchmark FROM benchmarks ORDER BY 1
