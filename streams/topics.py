"""Kafka administration for every deployment: wait for a broker, create topics.

Production code (the worker, the scoring stage) and the local launcher in ``devstack``
share these; nothing here starts a broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from schemas.errors import LogwardenError


class KafkaUnavailable(LogwardenError):
    """No broker answered at the bootstrap address in time."""


def _admin(bootstrap: str) -> AdminClient:
    # log_level 0: librdkafka would print every refused connection while the broker starts
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def is_healthy(bootstrap: str, timeout: float = 3.0) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request within ``timeout``."""
    try:
        return bool(_admin(bootstrap).list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


def wait_for_kafka(bootstrap: str, timeout: float = 60.0,
                   alive: Callable[[], bool] | None = None) -> None:
    """Block until a broker answers; KafkaUnavailable on ``timeout`` or once ``alive()`` fails."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise KafkaUnavailable("the broker process exited")
        left = deadline - time.monotonic()
        if left <= 0:
            raise KafkaUnavailable(f"no broker answered at {bootstrap} within {timeout:.0f} s")
        if is_healthy(bootstrap, min(1.0, max(left, 0.1))):
            return
        time.sleep(0.2)


def ensure_topics(bootstrap: str, topics: Mapping[str, int],
                  config: Mapping[str, str] | None = None, replication: int = 1,
                  timeout: float = 30.0) -> list[str]:
    """Create the topics ({name: partitions}) that do not exist yet; returns those created."""
    if not topics:
        return []
    new = [NewTopic(name, num_partitions=n, replication_factor=replication,
                    config=dict(config or {})) for name, n in topics.items()]
    admin = _admin(bootstrap)  # keep a reference: a collected client fails its futures
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        else:
            created.append(name)
    return created
