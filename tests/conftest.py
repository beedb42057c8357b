"""Shared fixtures: one real Kafka broker and one real chDB store for the whole session.

The broker is started from the project's own jars on a free loopback port and stopped at
the end (also when tests fail). Set LOGWARDEN_TEST_KAFKA_BOOTSTRAP to use a running one.
chDB hosts one data directory per process, so in-process tests share ``chdb_store`` and
each uses its own database.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse.client import Client, connect
from sinks.clickhouse.settings import ClickHouseSettings


def free_port_pair() -> int:
    """A free port whose successor is free too (broker + controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for this test session."""
    given = os.environ.get("LOGWARDEN_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    from devstack.kafka import LocalKafka

    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"), port=free_port_pair())
    kafka.start(timeout=180)
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def chdb_store(chdb_dir: Path) -> Iterator[Client]:
    """The session's embedded ClickHouse (chDB) client."""
    client = connect(ClickHouseSettings(), chdb_dir)
    yield client
    client.close()
