-- v_contaminated: one row per query that leaks a benchmark question (first matching item shown).
CREATE OR REPLACE VIEW v_contaminated AS
SELECT query_id, arg_min(benchmark, benchmark || item_id) AS benchmark,
       arg_min(item_id, benchmark || item_id) AS item_id, arg_min(reason, benchmark || item_id) AS reason,
       count(*) AS n_matches
FROM decontamination
GROUP BY query_id;
