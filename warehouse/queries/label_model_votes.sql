-- One keyset page of the label model's votes (v_label_model_votes), in (item_id, judge) order. The page
-- may end inside an item; the reader drops that item and starts the next page at it, so each page
-- holds whole items (tasks/annotation/dawid_skene.py: vote_pages). Parameters: $after_item_id, $page_size.
SELECT item_id, judge, label FROM v_label_model_votes
WHERE item_id > $after_item_id
ORDER BY item_id, judge
LIMIT $page_size
