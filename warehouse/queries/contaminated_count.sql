-- How many pairs decontamination keeps out of every split.
SELECT count(*) FROM v_contaminated
