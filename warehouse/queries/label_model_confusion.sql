-- Each judge's estimated confusion matrix (Dawid-Skene), for the annotate run's artifacts.
SELECT * FROM v_label_model_confusion
