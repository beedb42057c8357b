-- Categorisation: log templates, template events and categorisation accuracy.
-- Placeholders: {db} and the ttl_*_days fields of ClickHouseSettings.
-- Every statement must be idempotent (IF NOT EXISTS).

-- One row per (service, template); the worker rewrites a template's row when it changes
-- (cumulative count, last seen, a new category after feedback): the latest updated_at wins.
CREATE TABLE IF NOT EXISTS {db}.templates
(
    service LowCardinality(String),
    template_id String,
    template String,
    category LowCardinality(String),
    priority LowCardinality(String),
    team LowCardinality(String),
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    count UInt64,
    example String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (service, template_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- New templates, rate spikes, vanished templates and template explosions (masking bugs).
CREATE TABLE IF NOT EXISTS {db}.template_events
(
    ts DateTime64(3, 'UTC'),
    service LowCardinality(String),
    template_id String,
    kind LowCardinality(String),
    template String,
    value Float64,
    baseline Float64,
    details String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (service, kind, ts, template_id)
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Per service and reporting period: lines, unknown share, verdicts from feedback and
-- accuracies (NULL without verdicts), template count and its growth over the period.
CREATE TABLE IF NOT EXISTS {db}.categorisation_accuracy
(
    period_start DateTime64(3, 'UTC'),
    period_end DateTime64(3, 'UTC'),
    service LowCardinality(String),
    lines UInt64,
    unknown_lines UInt64,
    unknown_fraction Nullable(Float64),
    category_verdicts UInt64,
    category_correct UInt64,
    category_accuracy Nullable(Float64),
    priority_verdicts UInt64,
    priority_correct UInt64,
    priority_accuracy Nullable(Float64),
    templates UInt64,
    template_growth Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(period_start)
ORDER BY (service, period_start, period_end)
TTL toDateTime(period_start) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
