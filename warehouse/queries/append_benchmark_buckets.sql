-- New LSH bucket rows (the registered frame _rows); a plain insert: the table has no key, callers insert each row once.
INSERT INTO benchmark_buckets BY NAME SELECT * FROM _rows
