-- Core tables: logs, metric points, windows, dead letters, changes, feedback.
-- Placeholders: {db} and the ttl_*_days fields of ClickHouseSettings.
-- Every statement must be idempotent (IF NOT EXISTS): a crash between statements re-runs them.
-- non_replicated_deduplication_window lets a retried insert carrying the same
-- insert_deduplication_token land once; ReplacingMergeTree on event ids is the second line.

CREATE TABLE IF NOT EXISTS {db}.logs
(
    ts DateTime64(3, 'UTC'),
    service LowCardinality(String),
    level LowCardinality(String),
    message String,
    host LowCardinality(String),
    logger LowCardinality(String),
    env LowCardinality(String),
    trace_id String,
    span_id String,
    event_id String,
    http_method LowCardinality(String),
    http_route String,
    http_status UInt16,
    http_duration_ms Nullable(Float32),
    peer_service LowCardinality(String),
    peer_operation String,
    peer_duration_ms Nullable(Float32),
    peer_ok Nullable(UInt8),
    user_id String,
    user_ip String,
    user_action String,
    user_outcome LowCardinality(String),
    attrs String,
    template_id String,
    category LowCardinality(String),
    severity LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset UInt64,
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (service, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_logs_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {db}.metric_points
(
    ts DateTime64(3, 'UTC'),
    service LowCardinality(String),
    name LowCardinality(String),
    value Float64,
    kind LowCardinality(String),
    unit LowCardinality(String),
    labels Map(String, String),
    series String,
    event_id String,
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (service, name, series, ts)
TTL toDateTime(ts) + INTERVAL {ttl_metrics_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {db}.windows
(
    series String,
    service LowCardinality(String),
    scope LowCardinality(String),
    route String,
    name String,
    window_s UInt32,
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    count UInt64,
    error_count UInt64,
    level_counts Map(String, UInt64),
    error_rate Float64,
    rate_per_s Float64,
    p50 Float64,
    p95 Float64,
    p99 Float64,
    min Float64,
    max Float64,
    mean Float64,
    last Float64,
    sum Float64,
    revision UInt32,
    emitted_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(start)
ORDER BY (series, window_s, start)
TTL toDateTime(start) + INTERVAL {ttl_windows_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    received_at DateTime64(3, 'UTC'),
    topic LowCardinality(String),
    partition UInt32,
    offset Int64,
    stage LowCardinality(String),
    error String,
    raw String,
    raw_size UInt64,
    key String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at)
TTL toDateTime(received_at) + INTERVAL {ttl_dead_letters_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.changes
(
    ts DateTime64(3, 'UTC'),
    service LowCardinality(String),
    kind LowCardinality(String),
    description String,
    attrs String,
    event_id String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (service, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.feedback
(
    ts DateTime64(3, 'UTC'),
    target_kind LowCardinality(String),
    target_id String,
    verdict LowCardinality(String),
    user String,
    comment String,
    attrs String,
    event_id String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (target_kind, target_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
