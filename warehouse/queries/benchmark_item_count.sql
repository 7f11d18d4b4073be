-- Items stored under one benchmark name. Parameter: ? (benchmark).
SELECT count(*) FROM benchmarks WHERE benchmark = ?
