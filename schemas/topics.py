"""Kafka topic names: the ingest contract and the project's internal topics."""

from __future__ import annotations

# Ingest contract (any producer may write these).
LOGS = "logwarden.logs.v1"
METRICS = "logwarden.metrics.v1"
CHANGES = "logwarden.changes.v1"
FEEDBACK = "logwarden.feedback.v1"

# Internal topics.
WINDOWS = "logwarden.windows.v1"  # closed (and revised) windowed aggregates
DEAD_LETTERS = "logwarden.dead-letters.v1"  # input that failed to parse or validate
ANOMALIES = "logwarden.anomalies.v1"
TEMPLATE_EVENTS = "logwarden.template-events.v1"  # new / spike / vanished / explosion
TEMPLATE_STATE = "logwarden.template-state.v1"  # compacted: template miner state by service
DETECTOR_STATE = "logwarden.detector-state.v1"  # compacted: detector state by series
ALERT_ACTIONS = "logwarden.alert-actions.v1"  # ack / resolve / silence from API, Slack, SMS
ALERT_SIGNALS = "logwarden.alert-signals.v1"  # rule verdicts and manager ticks (partition 0)
ALERT_TICKS = "logwarden.alert-ticks.v1"  # evaluation ticks, one per partition

INGEST_TOPICS = (LOGS, METRICS, CHANGES, FEEDBACK)
INTERNAL_TOPICS = (WINDOWS, DEAD_LETTERS, ANOMALIES, TEMPLATE_EVENTS, TEMPLATE_STATE,
                   ALERT_ACTIONS, ALERT_SIGNALS, ALERT_TICKS)
