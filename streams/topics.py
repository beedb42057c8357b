"""Kafka administration for every deployment: wait for a broker, create topics.

Production code (the worker, the scoring stage) and the local launcher in ``devstack``
share these; nothing here starts a broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from schemas import topics
from schemas.errors import LogwardenError
from streams.settings import Settings

# State topics (template miners, detector models) keep the latest snapshot per key; a
# service's miner snapshot may reach a few MiB (10k templates).
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": str(16 << 20)}


class KafkaUnavailable(LogwardenError):
    """No broker answered at the bootstrap address in time."""


class KafkaAuthFailed(KafkaUnavailable):
    """The broker answered but refused our TLS handshake or SASL login."""


Security = Mapping[str, str]  # librdkafka TLS/SASL properties (``KafkaSecurity.librdkafka``)


def _admin(bootstrap: str, security: Security | None = None, **extra: Any) -> AdminClient:
    # log_level 0: librdkafka would print every refused connection while the broker starts
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **(security or {}),
                        **extra})


_REFUSED = (KafkaError._AUTHENTICATION, KafkaError._SSL)  # retrying will not help


def check_kafka(bootstrap: str, timeout: float = 3.0, security: Security | None = None
                ) -> bool:
    """Whether the broker answers a metadata request; KafkaAuthFailed when it refuses our
    SASL login or the TLS handshake fails (waiting longer would not help)."""
    refused: list[str] = []

    def on_error(err: KafkaError) -> None:
        if err.code() in _REFUSED and not refused:
            refused.append(err.str())

    admin = _admin(bootstrap, security, error_cb=on_error)
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        admin.poll(0.1)  # serve the error callbacks: they say why
        if refused:
            raise KafkaAuthFailed(f"Kafka at {bootstrap} refused us: {refused[0]}") from None
        return False


def is_healthy(bootstrap: str, timeout: float = 3.0, security: Security | None = None
               ) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request within ``timeout``."""
    try:
        return check_kafka(bootstrap, timeout, security)
    except KafkaAuthFailed:
        return False


def wait_for_kafka(bootstrap: str, timeout: float = 60.0,
                   alive: Callable[[], bool] | None = None,
                   security: Security | None = None) -> None:
    """Block until a broker answers; KafkaUnavailable on ``timeout`` or once ``alive()`` fails,
    KafkaAuthFailed at once when it refuses our TLS or SASL credentials."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise KafkaUnavailable("the broker process exited")
        left = deadline - time.monotonic()
        if left <= 0:
            raise KafkaUnavailable(f"no broker answered at {bootstrap} within {timeout:.0f} s")
        if check_kafka(bootstrap, min(1.0, max(left, 0.1)), security):
            return
        time.sleep(0.2)


def ensure_topics(bootstrap: str, topics: Mapping[str, int],
                  config: Mapping[str, str] | None = None, replication: int = 1,
                  timeout: float = 30.0, security: Security | None = None) -> list[str]:
    """Create the topics ({name: partitions}) that do not exist yet; returns those created."""
    if not topics:
        return []
    new = [NewTopic(name, num_partitions=n, replication_factor=replication,
                    config=dict(config or {})) for name, n in topics.items()]
    admin = _admin(bootstrap, security)  # keep a reference: a collected client fails its futures
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


# Ingest topics accept messages up to 16 MiB so an oversized event reaches the pipeline
# and is dead-lettered with its reason instead of vanishing at the producer.
INGEST_TOPIC_CONFIG = {"max.message.bytes": str(16 << 20)}


def cluster_brokers(bootstrap: str, timeout: float = 10.0, security: Security | None = None
                    ) -> int:
    """How many brokers the cluster at ``bootstrap`` lists (0: no answer)."""
    try:
        return len(_admin(bootstrap, security).list_topics(timeout=timeout).brokers)
    except KafkaException:
        return 0


def resolve_replication(s: Settings) -> Settings:
    """``s`` with LOGWARDEN_KAFKA_REPLICATION "auto" made a number: min(3, brokers)."""
    if s.kafka.replication != "auto":
        return s
    brokers = cluster_brokers(s.kafka.bootstrap_servers(), security=s.kafka.librdkafka())
    kafka = s.kafka.model_copy(update={"replication": max(1, min(3, brokers))})
    return s.model_copy(update={"kafka": kafka})


def topic_config(s: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` plus the durability of our topics: min.insync.replicas 2 with 3 copies."""
    return {**(base or {}), "min.insync.replicas": str(s.kafka.min_insync())}


def prepare_topics(s: Settings) -> None:
    """Create the contract and internal topics (idempotent)."""
    n, bootstrap = s.kafka.partitions, s.kafka.bootstrap_servers()
    r, sec = s.kafka.replicas, s.kafka.librdkafka()
    ensure_topics(bootstrap, dict.fromkeys(topics.INGEST_TOPICS, n),
                  topic_config(s, INGEST_TOPIC_CONFIG), r, security=sec)
    # Template and detector state are changelogs (latest snapshot per key): compacted,
    # created before the plain internal topics.
    t = topics.internal(s.stream.app_id)
    ensure_topics(bootstrap, {t.template_state: n, t.detector_state: n},
                  topic_config(s, STATE_TOPIC_CONFIG), r, security=sec)
    ensure_topics(bootstrap, dict.fromkeys(t.all, n), topic_config(s), replication=r,
                  security=sec)
