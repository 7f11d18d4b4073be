-- Question and signature of matched benchmark items. Frame: refs(ref_id). Parameter: $method.
SELECT r.ref_id, b.question AS text, s.signature, b.benchmark, b.item_id
FROM refs r
JOIN benchmark_sketches s ON s.method = $method AND s.benchmark || chr(31) || s.item_id = r.ref_id
JOIN benchmarks b USING (benchmark, item_id)
