-- Which of the candidate query ids are stored already (a parser counts them as duplicate_of_earlier).
-- Registered frame: wanted_ids(id).
SELECT q.query_id AS id FROM queries q SEMI JOIN wanted_ids w ON q.query_id = w.id
