-- `libra status`: labelled responses per scenario (queries, responses, final labels, hard samples).
SELECT scenario, count(DISTINCT query_id) AS queries, count(*) AS responses,
       count(*) FILTER (WHERE final_label = '不安全') AS unsafe,
       count(*) FILTER (WHERE final_label = '安全') AS safe,
       count(*) FILTER (WHERE vote_status = 'hard') AS hard
FROM v_dataset
GROUP BY scenario
ORDER BY scenario
