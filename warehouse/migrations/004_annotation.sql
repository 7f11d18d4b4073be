-- 004: annotation facts beyond the response votes.
-- prompt_labels: a judge's prompt-level label (was the query itself harmful?), asked for when the
-- config sets judging.prompt_label. Kept apart from `votes`: the vote is about the response, and a
-- query has one prompt label per judge call (one per response it was asked with).
CREATE TABLE prompt_labels (
    vote_id        VARCHAR PRIMARY KEY,   -- the judge call that gave it: the same id as its vote
    query_id       VARCHAR NOT NULL,
    response_id    VARCHAR NOT NULL,
    judge          VARCHAR NOT NULL,
    model          VARCHAR NOT NULL,
    label          VARCHAR,               -- 安全 | 不安全 | NULL (not given or unreadable)
    prompt_version VARCHAR,
    run_id         VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);
