-- Incidents: one row per version of an incident; the newest version is the incident.
-- The full incident (suspects, evidence, timeline) is the JSON document `doc`; the columns
-- beside it are what lists filter and sort on. A replayed write of the same version folds
-- into one row (ReplacingMergeTree on version, dedup token).

CREATE TABLE IF NOT EXISTS {db}.incidents
(
    id String,
    ts DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    version UInt64,
    status LowCardinality(String),
    severity LowCardinality(String),
    team LowCardinality(String),
    services Array(String),
    root_cause Array(String),
    suspect_changes Array(String),
    alerts UInt32,
    anomalies UInt32,
    doc String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
