-- Benchmark questions with the same normalised text as batch texts. Frame: hashes(pos, norm_hash).
-- Parameter: $method. ref_id = benchmark, unit separator, item_id.
SELECT h.pos, s.benchmark || chr(31) || s.item_id AS ref_id
FROM hashes h
JOIN benchmark_sketches s ON s.norm_hash = h.norm_hash AND s.method = $method
