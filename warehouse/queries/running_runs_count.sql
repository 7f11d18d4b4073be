-- Runs of a flow still marked running. Parameters: ? (flow).
SELECT count(*) FROM runs WHERE flow = ? AND status = 'running'
