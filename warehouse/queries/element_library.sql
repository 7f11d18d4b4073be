-- The stored element library (the elements flow plans from it; synthesize draws behaviours and events).
SELECT element_id, scenario, subcategory, kind, text FROM elements ORDER BY element_id
