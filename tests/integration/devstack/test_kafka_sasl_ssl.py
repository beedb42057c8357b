"""Every Kafka client the project builds from its settings talks TLS + SASL to a real broker.

The local broker is started with one SASL_SSL listener (a CA and a broker certificate made
here, SCRAM users created at format time). Clients are built the way the worker builds
them, from ``Settings().kafka``: the confluent-kafka producer, consumers (the stages' batch
consumer, the state reader) and admin client, aiokafka as Faust drives it (its broker
credentials), and the SDK publisher.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from confluent_kafka import Consumer, Producer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from devstack.kafka import LocalKafka, local_kafka
from devstack.kafka_tls import BrokerSecurity
from sdk.publisher import Publisher
from streams.app import broker_credentials
from streams.settings import KafkaSettings
from streams.state import read_compacted
from streams.topics import KafkaAuthFailed, check_kafka, ensure_topics, wait_for_kafka

pytestmark = pytest.mark.integration

USERS = {"broker": "broker-pw", "worker": "worker-secret-1", "sdk": "sdk-secret-2"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka,
                                                                       BrokerSecurity]]:
    folder = tmp_path_factory.mktemp("kafka-sasl-ssl")
    sec = BrokerSecurity.create(folder / "pki", USERS)
    with local_kafka(folder / "broker", sec) as kafka:
        yield kafka, sec


def settings_for(kafka: LocalKafka, sec: BrokerSecurity, user: str = "worker",
                 password: str | None = None, mechanism: str = "SCRAM-SHA-512",
                 cafile: Path | None = None) -> KafkaSettings:
    """What LOGWARDEN_KAFKA_* would give the worker."""
    return KafkaSettings.model_validate({
        "bootstrap": kafka.bootstrap, "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism, "sasl_username": user,
        "sasl_password": password or USERS[user], "ssl_cafile": cafile or sec.pki.ca})


def consume(k: KafkaSettings, topic: str, n: int, timeout: float = 30.0) -> list[bytes]:
    c = Consumer({**k.client_config(), "group.id": f"t-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value() or b"")
    finally:
        c.close()
    return got


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_sasl_ssl_confluent_producer_consumer_and_admin_from_settings(
        secure: tuple[LocalKafka, BrokerSecurity], mechanism: str) -> None:
    kafka, sec = secure
    k = settings_for(kafka, sec, mechanism=mechanism)
    wait_for_kafka(k.bootstrap_servers(), 30, security=k.librdkafka())
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(k.bootstrap_servers(), {topic: 2}, security=k.librdkafka()) == [topic]
    p = Producer({**k.client_config(), "enable.idempotence": True})  # as streams.runtime
    for i in range(20):
        p.produce(topic, key=f"k{i % 4}", value=f"v{i}".encode())
    assert p.flush(30) == 0
    assert sorted(consume(k, topic, 20)) == sorted(f"v{i}".encode() for i in range(20))
    latest = read_compacted(k, topic, f"t-{uuid.uuid4()}", 30)  # the state topics' reader
    assert latest == {f"k{j}": f"v{16 + j}".encode() for j in range(4)}


def test_sasl_ssl_sdk_publisher(secure: tuple[LocalKafka, BrokerSecurity]) -> None:
    kafka, sec = secure
    k = settings_for(kafka, sec, user="sdk")
    topic = f"sec-sdk-{uuid.uuid4().hex[:8]}"
    ensure_topics(k.bootstrap_servers(), {topic: 1}, security=k.librdkafka())
    with Publisher(k.bootstrap_servers(), service="svc", security=k) as pub:
        for i in range(10):
            assert pub.publish(topic, {"service": "svc", "i": i})
        assert pub.flush(30) == 0
        assert pub.stats().delivered == 10 and pub.stats().dropped == 0
    assert len(consume(k, topic, 10)) == 10


def test_sasl_ssl_aiokafka_and_faust_credentials(
        secure: tuple[LocalKafka, BrokerSecurity]) -> None:
    kafka, sec = secure
    k = settings_for(kafka, sec)
    topic = f"sec-aio-{uuid.uuid4().hex[:8]}"
    ensure_topics(k.bootstrap_servers(), {topic: 1}, security=k.librdkafka())
    # What Faust hands aiokafka for its producer, consumer and admin client.
    faust_auth = credentials_to_aiokafka_auth(broker_credentials(k))
    assert faust_auth["security_protocol"] == "SASL_SSL"

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap_servers(), **faust_auth)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"a{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, **k.aiokafka_config(),
                                    group_id=f"t-{uuid.uuid4()}", auto_offset_reset="earliest")
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=10_000, max_records=5)
            return [m.value or b"" for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [f"a{i}".encode() for i in range(5)]


def test_wrong_password_is_refused_with_a_clear_error(
        secure: tuple[LocalKafka, BrokerSecurity]) -> None:
    kafka, sec = secure
    bad = settings_for(kafka, sec, password="not-the-password")
    started = time.monotonic()
    with pytest.raises(KafkaAuthFailed, match="invalid credentials"):
        wait_for_kafka(bad.bootstrap_servers(), 60, security=bad.librdkafka())
    assert time.monotonic() - started < 15  # refused at once, not after the timeout

    async def aio() -> None:
        consumer = AIOKafkaConsumer(**bad.aiokafka_config(), group_id="t-bad")
        try:
            await consumer.start()
        finally:
            await consumer.stop()

    with pytest.raises(AIOKafkaError):
        asyncio.run(aio())
    with Publisher(bad.bootstrap_servers(), service="svc", security=bad,
                   config={"message.timeout.ms": 3000}) as pub:
        pub.publish("logwarden.logs.v1", {"service": "svc"})
        pub.flush(10)
        assert pub.stats().delivered == 0 and pub.stats().errors > 0


def test_plaintext_and_untrusted_ca_are_refused(
        secure: tuple[LocalKafka, BrokerSecurity], tmp_path: Path) -> None:
    kafka, sec = secure
    assert check_kafka(kafka.bootstrap, 3.0) is False  # no TLS: no answer
    other = BrokerSecurity.create(tmp_path / "other-ca", {"x": "y"})  # another CA
    k = settings_for(kafka, sec, cafile=other.pki.ca)
    with pytest.raises(KafkaAuthFailed, match="certificate verify failed"):
        check_kafka(k.bootstrap_servers(), 5.0, k.librdkafka())
