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
TEMPLATES = "logwarden.templates.v1"  # new / changed log templates
ANOMALIES = "logwarden.anomalies.v1"
ALERTS = "logwarden.alerts.v1"
NOTIFICATIONS = "logwarden.notifications.v1"

INGEST_TOPICS = (LOGS, METRICS, CHANGES, FEEDBACK)
INTERNAL_TOPICS = (WINDOWS, DEAD_LETTERS, TEMPLATES, ANOMALIES, ALERTS, NOTIFICATIONS)
