-- What one guard's mining found, per scenario (v_mining). Parameter: $guard.
SELECT * EXCLUDE (guard) FROM v_mining WHERE guard = $guard ORDER BY scenario
