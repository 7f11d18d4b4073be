-- Stored *kept* queries sharing an LSH bucket with batch texts: the only ones a new text is compared
-- with (tasks/dedup/near.py: greedy, first kept text wins). Frame: buckets(pos, bucket). Parameter: $method.
SELECT DISTINCT b.pos, m.query_id AS ref_id
FROM buckets b
JOIN minhash_buckets m ON m.bucket = b.bucket AND m.method = $method
JOIN dedup d ON d.query_id = m.query_id AND d.kept
