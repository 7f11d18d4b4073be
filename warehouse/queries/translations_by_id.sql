-- The stored translations among the wanted ids (a translated pair's texts). Registered frame: wanted_ids(id).
SELECT t.translation_id, t.text, t.prompt_version, t.generator, t.call_key
FROM translations t SEMI JOIN wanted_ids w ON t.translation_id = w.id
