-- The responses a `--where` predicate over v_dataset's columns keeps; {where} is the user's
-- predicate, run on the locked-down connection of `libra sql` (tasks/annotation/review.py).
SELECT response_id FROM v_dataset WHERE ({where})
