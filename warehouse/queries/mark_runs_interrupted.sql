-- Runs of a flow still marked running whose process died: interrupted. Parameters: ? (finished_at), ? (flow).
UPDATE runs SET status = 'interrupted', finished_at = ? WHERE flow = ? AND status = 'running'
