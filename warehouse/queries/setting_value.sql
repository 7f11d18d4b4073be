-- One setting from the warehouse `settings` table, by key ($1); no row when it is not set.
SELECT value FROM settings WHERE key = $1
