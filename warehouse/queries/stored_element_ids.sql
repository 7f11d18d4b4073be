-- Which of the candidate ids are stored in elements already. Registered frame: wanted_ids(id).
SELECT t.element_id AS id FROM elements t SEMI JOIN wanted_ids w ON t.element_id = w.id
