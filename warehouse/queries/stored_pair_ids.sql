-- Which of the candidate ids are stored in translated_pairs already. Registered frame: wanted_ids(id).
SELECT t.pair_id AS id FROM translated_pairs t SEMI JOIN wanted_ids w ON t.pair_id = w.id
