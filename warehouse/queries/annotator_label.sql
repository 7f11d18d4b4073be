-- One annotator's current label of an item. Parameters: ? (response_id), ? (annotator).
SELECT label FROM _annotator_labels WHERE response_id = ? AND annotator = ?
