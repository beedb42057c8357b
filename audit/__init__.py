"""The audit trail: who did what through the API and CLI, hash-chained in ClickHouse."""
