-- Redaction counts (privacy/): matches per privacy rule, one row per rule and worker every
-- 10 s at most (sum(count) is the total). Kept as long as the audit trail: the compliance
-- report reads them.
CREATE TABLE IF NOT EXISTS {db}.redaction_counts
(
    ts DateTime64(3, 'UTC'),
    writer String,
    rule LowCardinality(String),
    count UInt64,
    event_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (rule, ts, writer, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
