-- The items of one registered benchmark, in the columns of a Libra-Test record. Parameter: $name.
SELECT item_id, source, category_name, sub_category_name, question, response, label, "analyze"
FROM benchmarks
WHERE benchmark = $name
ORDER BY item_id
