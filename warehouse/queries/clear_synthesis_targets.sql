-- The synthesize run's plan replaces the last one's (the flow then inserts the new targets).
DELETE FROM synthesis_targets
