-- Whether a table or view of this name exists (1) or not (0). Parameters: ? (its name).
SELECT count(*) FROM information_schema.tables WHERE table_name = ?
