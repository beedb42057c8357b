-- Detection: anomalies (every variant; champion ones are alerted on) and detector quality
-- figures derived from people's feedback. event_id is the anomaly id (deterministic, so a
-- replayed window folds into the same row).

CREATE TABLE IF NOT EXISTS {db}.anomalies
(
    event_id String,
    ts DateTime64(3, 'UTC'),
    series String,
    service LowCardinality(String),
    route String,
    scope LowCardinality(String),
    feature LowCardinality(String),
    window_s UInt32,
    observed Float64,
    expected Float64,
    lo Float64,
    hi Float64,
    score Float64,
    threshold Float64,
    direction LowCardinality(String),
    severity LowCardinality(String),
    detector LowCardinality(String),
    version LowCardinality(String),
    variant LowCardinality(String),
    contributing Map(String, Float64),
    changes String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (service, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.detector_quality
(
    ts DateTime64(3, 'UTC'),
    detector LowCardinality(String),
    variant LowCardinality(String),
    series String,
    true_count UInt64,
    false_count UInt64,
    unsure_count UInt64,
    precision Float64,
    false_alert_rate Float64,
    threshold_adj Float64,
    event_id String
)
ENGINE = ReplacingMergeTree(ts)
PARTITION BY toYYYYMM(ts)
ORDER BY (detector, variant, series)
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
