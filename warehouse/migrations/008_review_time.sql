-- 008: the review page (`libra review`) records how long an annotator spent on an item; Label Studio
-- exports carry the same figure (`lead_time`). NULL for labels from a sheet, which has no clock.
ALTER TABLE human_labels ADD COLUMN seconds_spent DOUBLE;
