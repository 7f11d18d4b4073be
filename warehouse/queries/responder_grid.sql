-- Every (responder, model, sample_index) the warehouse has seen: the grid a settled query needs
-- when the config does not say which responses it wants.
SELECT DISTINCT responder, model, sample_index FROM responses
