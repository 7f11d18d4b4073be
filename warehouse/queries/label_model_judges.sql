-- Each judge's estimated accuracy (Dawid-Skene), for the annotate run's artifacts.
SELECT * FROM v_label_model_judges
