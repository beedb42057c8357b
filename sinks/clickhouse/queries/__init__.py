"""Typed reads: the API, dashboards and reports query ClickHouse only through these
modules, one per concept (``base`` holds what they share)."""
