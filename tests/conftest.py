"""Shared fixtures: one real Kafka broker and one real chDB store for the whole session.

The broker is started from the project's own jars on a free loopback port and stopped at
the end (also when tests fail). Set LOGWARDEN_TEST_KAFKA_BOOTSTRAP to use a running one.
chDB hosts one data directory per process, so in-process tests share ``chdb_store`` and
each uses its own database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kafka import throwaway_kafka
from sinks.clickhouse.client import Client, connect
from sinks.clickhouse.settings import ClickHouseSettings


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for this test session."""
    with throwaway_kafka(os.environ.get("LOGWARDEN_TEST_KAFKA_BOOTSTRAP"),
                         tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def chdb_store(chdb_dir: Path) -> Iterator[Client]:
    """The session's embedded ClickHouse (chDB) client."""
    client = connect(ClickHouseSettings(), chdb_dir)
    yield client
    client.close()
