-- Stored queries sharing an LSH bucket with batch texts. Frame: buckets(pos, bucket). Parameter: $method.
SELECT DISTINCT b.pos, m.query_id AS ref_id
FROM buckets b
JOIN minhash_buckets m ON m.bucket = b.bucket AND m.method = $method
