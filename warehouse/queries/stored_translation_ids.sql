-- Which of the candidate ids are stored in translations already. Registered frame: wanted_ids(id).
SELECT t.translation_id AS id FROM translations t SEMI JOIN wanted_ids w ON t.translation_id = w.id
