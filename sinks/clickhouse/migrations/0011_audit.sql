-- The audit trail (audit/): every API write, query, token creation, acknowledgement,
-- silence, configuration reload and remediation action, one row each. Append-only: a
-- plain MergeTree (no row is ever replaced or merged away) with no TTL. Rows are
-- hash-chained per writer (seq 0, 1, 2, ... each hash covering the previous one), so an
-- edited or deleted row breaks the chain: `logwarden audit verify`.
CREATE TABLE IF NOT EXISTS {db}.audit
(
    ts DateTime64(3, 'UTC'),
    writer String,
    seq UInt64,
    actor String,
    role LowCardinality(String),
    action LowCardinality(String),
    target String,
    detail String,
    outcome LowCardinality(String),
    prev_hash String,
    hash String
)
ENGINE = MergeTree
ORDER BY (writer, seq);
