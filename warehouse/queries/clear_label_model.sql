-- A new label-model fit replaces the last one as a whole (tasks/annotation/dawid_skene.py: store_label_model).
DELETE FROM label_posteriors;
DELETE FROM label_model_judges;
DELETE FROM label_model_confusion;
