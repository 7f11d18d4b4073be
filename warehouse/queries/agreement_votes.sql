-- The labelled votes the agreement report reads (tasks/reports/agreement.py).
SELECT response_id, judge, label, scenario FROM _labelled_votes
