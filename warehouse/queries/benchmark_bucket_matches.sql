-- Benchmark questions sharing an LSH bucket with batch texts. Frame: buckets(pos, bucket). Parameter: $method.
SELECT DISTINCT b.pos, m.benchmark || chr(31) || m.item_id AS ref_id
FROM buckets b
JOIN benchmark_buckets m ON m.bucket = b.bucket AND m.method = $method
