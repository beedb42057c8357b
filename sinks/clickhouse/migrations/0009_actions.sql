-- Runbook actions (alerting/actions.py): one row per state change of an action, keyed by
-- incident (incident_id) where one exists, else by alert episode (alert_key). The incident
-- timeline reads ts, kind, outcome. event_id = action id + version folds a replayed write.

CREATE TABLE IF NOT EXISTS {db}.actions
(
    ts DateTime64(3, 'UTC'),
    action_id String,
    incident_id String,
    alert_key String,
    fingerprint String,
    rule LowCardinality(String),
    runbook String,
    step String,
    kind LowCardinality(String),
    outcome LowCardinality(String),
    by String,
    plan String,
    detail String,
    duration_ms Float64,
    version UInt64,
    event_id String
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (action_id, version, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_events_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
