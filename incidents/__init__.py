"""Incidents: the alerts, anomalies and changes of one problem, grouped, with a ranked root
cause and its evidence (docs/incidents.md). Pure code: no Kafka, no ClickHouse."""
