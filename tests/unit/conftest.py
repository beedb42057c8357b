"""Unit tests touch no broker and no database: opening either fails the test."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("unit tests must not open ClickHouse or Kafka admin clients")

    import clickhouse_connect
    from confluent_kafka import admin

    monkeypatch.setattr(clickhouse_connect, "get_client", refuse)
    monkeypatch.setattr(admin, "AdminClient", refuse)
