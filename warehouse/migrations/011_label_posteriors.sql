-- 011: labels better than a majority (issue 16 part 2, tasks/annotation/dawid_skene.py). With vote.method
-- dawid_skene the annotate flow fits Dawid & Skene's EM over the stored votes and writes, replacing the
-- previous fit: each response's posterior P(不安全), and each judge's estimated confusion matrix and
-- accuracy. The vote views read label_posteriors only while settings 'vote.method' = 'dawid_skene'.
CREATE TABLE label_posteriors (
    response_id VARCHAR PRIMARY KEY,
    p_unsafe    DOUBLE NOT NULL,           -- posterior probability that the response is 不安全
    method      VARCHAR NOT NULL,          -- dawid_skene
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE label_model_judges (
    judge        VARCHAR PRIMARY KEY,      -- a judge, or correlated judges joined with '+'
    votes        INTEGER NOT NULL,
    accuracy     DOUBLE,                   -- sum_k prior_k x P(judge says k | k); NULL for a group
    recall_safe  DOUBLE,                   -- P(judge says 安全 | 安全)
    recall_unsafe DOUBLE,                  -- P(judge says 不安全 | 不安全)
    method       VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE label_model_confusion (
    judge          VARCHAR NOT NULL,
    true_label     VARCHAR NOT NULL,
    judge_label    VARCHAR NOT NULL,
    probability    DOUBLE NOT NULL,        -- P(judge says judge_label | true_label)
    expected_count DOUBLE NOT NULL,        -- expected number of such votes under the posteriors
    method         VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (judge, true_label, judge_label)
);
