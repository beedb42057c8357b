"""End to end on a SASL_SSL broker: ``logwarden worker`` configured only through
LOGWARDEN_KAFKA_* (SCRAM-SHA-512 over TLS) ingests what the SDK publishes over TLS; with a
wrong password it stops at once with a clear error instead of waiting on the broker."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import conftest  # type: ignore[import-not-found]
import pytest
from conftest import Worker, start_worker  # type: ignore[import-not-found]

from devstack.kafka import LocalKafka, local_kafka
from devstack.kafka_tls import BrokerSecurity
from schemas import topics
from sdk import Publisher

pytestmark = pytest.mark.e2e
USERS = {"broker": "broker-pw", "worker": "w0rker-secret"}




@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka,
                                                                       BrokerSecurity]]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    sec = BrokerSecurity.create(folder / "pki", USERS)
    with local_kafka(folder / "broker", sec) as kafka:
        yield kafka, sec


def kafka_env(sec: BrokerSecurity, password: str) -> dict[str, str]:
    return {"LOGWARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LOGWARDEN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LOGWARDEN_KAFKA_SASL_USERNAME": "worker",
            "LOGWARDEN_KAFKA_SASL_PASSWORD": password,
            "LOGWARDEN_KAFKA_SSL_CAFILE": str(sec.pki.ca)}


def test_worker_ingests_over_sasl_ssl(secure: tuple[LocalKafka, BrokerSecurity],
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    kafka, sec = secure
    w: Worker = start_worker(kafka.bootstrap, tmp_path_factory.mktemp("secure-worker"),
                             f"sec-{uuid.uuid4().hex[:8]}",
                             **kafka_env(sec, USERS["worker"]))
    try:
        service = f"sec-{uuid.uuid4().hex[:8]}"
        now = int(time.time() * 1000)
        with Publisher(kafka.bootstrap, service=service,
                       security=sec.client("worker")) as pub:
            for i in range(50):
                pub.publish(topics.LOGS, {"ts": now + i, "service": service, "level": "INFO",
                                          "message": f"hello {i}"})
            assert pub.flush(30) == 0
        w.wait_for(lambda: w.query("SELECT count() FROM logwarden.logs WHERE service = "
                                   "{s:String}", s=service) == [[50]], what="the rows")
        # the ingest and scoring stages' consumers joined over SASL_SSL too
        w.wait_for(lambda: '"detector_state_loaded"' in w.log.read_text(),
                   what="the scoring stage's assignment")
        log = w.log.read_text()
        assert "invalid credentials" not in log and "certificate verify failed" not in log
        assert '"partitions_assigned"' in log
    finally:
        w.stop()


def test_worker_with_a_wrong_password_stops_with_a_clear_error(
        secure: tuple[LocalKafka, BrokerSecurity], tmp_path: pytest.TempPathFactory) -> None:
    kafka, sec = secure
    env = {**os.environ, "LOGWARDEN_KAFKA_BOOTSTRAP": kafka.bootstrap,
           "LOGWARDEN_DATA_DIR": str(tmp_path), **kafka_env(sec, "wrong")}
    # it stops at once (a hang would raise TimeoutExpired), not retrying the login forever
    done = subprocess.run([str(conftest.BIN), "worker"], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "invalid credentials" in done.stderr, done.stderr[-2000:]
