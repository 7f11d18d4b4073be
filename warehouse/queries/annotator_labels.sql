-- Each annotator's current label and note per response.
SELECT response_id, annotator, label, note FROM _annotator_labels
