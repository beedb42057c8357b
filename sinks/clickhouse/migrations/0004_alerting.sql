-- Alerting: every alert state change, every notification attempt, every silence version.
-- event_id makes a replayed write fold into the same row (ReplacingMergeTree + dedup token).

CREATE TABLE IF NOT EXISTS {db}.alerts
(
    ts DateTime64(3, 'UTC'),
    fingerprint String,
    rule LowCardinality(String),
    labels Map(String, String),
    state LowCardinality(String),
    severity LowCardinality(String),
    service LowCardinality(String),
    summary String,
    value Float64,
    starts_at DateTime64(3, 'UTC'),
    ends_at Nullable(DateTime64(3, 'UTC')),
    trigger_ts DateTime64(3, 'UTC'),
    acked_by String,
    suppressed Bool,
    suppressed_reason String,
    flapping Bool,
    evidence String,
    version UInt64,
    event_id String
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (fingerprint, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.notifications
(
    ts DateTime64(3, 'UTC'),
    message_id String,
    fingerprint String,
    receiver LowCardinality(String),
    channel String,
    kind LowCardinality(String),
    status LowCardinality(String),
    outcome LowCardinality(String),
    attempt UInt16,
    provider_id String,
    latency_ms Float64,
    delay_s Nullable(Float64),
    error String,
    event_id String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.silences
(
    ts DateTime64(3, 'UTC'),
    id String,
    matchers Array(String),
    starts_at DateTime64(3, 'UTC'),
    ends_at Nullable(DateTime64(3, 'UTC')),
    created_by String,
    comment String,
    recurring String,
    deleted Bool,
    event_id String
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (id, ts)
SETTINGS non_replicated_deduplication_window = 1000;
