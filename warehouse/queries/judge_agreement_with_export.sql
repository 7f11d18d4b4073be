-- Each judge's agreement with the exported labels (the dataset card). Frames: exported(response_id, label).
SELECT v.judge, v.model, count(*) AS votes,
       count(*) FILTER (WHERE v.label = e.label) AS agree,
       count(*) FILTER (WHERE v.label IS NULL) AS abstain,
       round(count(*) FILTER (WHERE v.label = e.label) / count(*), 4) AS agreement
FROM votes v JOIN exported e USING (response_id)
GROUP BY ALL ORDER BY v.judge
