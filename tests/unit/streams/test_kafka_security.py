"""TLS and SASL settings reach every kind of Kafka client, and incomplete ones are refused."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from devstack.kafka import server_properties
from devstack.kafka_tls import BrokerSecurity, Pki
from schemas.kafka_security import KafkaSecurity
from streams.app import broker_credentials
from streams.settings import KafkaSettings, Settings

ENV = {"LOGWARDEN_KAFKA_BOOTSTRAP": "kafka-1:9093,kafka-2:9093",
       "LOGWARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
       "LOGWARDEN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
       "LOGWARDEN_KAFKA_SASL_USERNAME": "worker",
       "LOGWARDEN_KAFKA_SASL_PASSWORD": "pw-from-a-secret",
       "LOGWARDEN_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem"}


def test_tls_and_sasl_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    k = Settings().kafka
    assert k.client_config() == {
        "bootstrap.servers": "kafka-1:9093,kafka-2:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "worker",
        "sasl.password": "pw-from-a-secret", "ssl.ca.location": "/etc/kafka/ca.pem"}
    assert "pw-from-a-secret" not in repr(k) and "pw-from-a-secret" not in str(k)


def test_plaintext_default_adds_nothing() -> None:
    k = KafkaSettings()
    assert k.client_config() == {"bootstrap.servers": "127.0.0.1:19092"}
    assert k.aiokafka_config() == {"bootstrap_servers": "127.0.0.1:19092",
                                   "security_protocol": "PLAINTEXT"}
    assert broker_credentials(k) is None


@pytest.mark.parametrize("fields", [
    {"security_protocol": "SASL_SSL"},  # no user
    {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},  # no password
    {"security_protocol": "SSL", "ssl_certfile": "/c.pem"},  # cert without key
    {"security_protocol": "PLAINTEXT", "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"},
    {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
     "sasl_password": "p"},
    {"security_protocol": "TLS"},
])
def test_incomplete_or_unknown_security_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        KafkaSecurity.model_validate(fields)


def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


def test_aiokafka_and_faust_get_a_verifying_tls_context_and_the_login(tmp_path: Path) -> None:
    p = pki(tmp_path)
    k = KafkaSettings.model_validate({"security_protocol": "SASL_SSL", "sasl_username": "w",
                                      "sasl_password": "s", "ssl_cafile": p.ca})
    kw = k.aiokafka_config()
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "w" and kw["sasl_plain_password"] == "s"
    assert kw["ssl_context"].check_hostname and kw["ssl_context"].verify_mode == 2
    creds = broker_credentials(k)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    tls_only = KafkaSettings.model_validate({"security_protocol": "SSL", "ssl_cafile": p.ca,
                                             "ssl_certfile": p.cert, "ssl_keyfile": p.key})
    assert isinstance(broker_credentials(tls_only), faust.SSLCredentials)
    assert tls_only.librdkafka()["ssl.certificate.location"] == str(p.cert)


def test_local_broker_config_with_sasl_ssl(tmp_path: Path) -> None:
    sec = BrokerSecurity(pki(tmp_path), {"admin": "a-pw", "bob": "b-pw"})
    props = dict(line.split("=", 1) for line in server_properties(
        9092, 9093, tmp_path / "data", sec).splitlines())
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:9092"
    assert props["ssl.keystore.type"] == "PEM"
    assert 'user_bob="b-pw"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert "PLAINTEXT://" not in props["listeners"]
    assert sec.format_args()[:2] == ["--add-scram", "SCRAM-SHA-512=[name=admin,password=a-pw]"]
    with pytest.raises(ValueError):
        BrokerSecurity(sec.pki, {"x": 'quote"inside'}).server_properties(1, 2)
