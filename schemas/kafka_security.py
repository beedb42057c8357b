"""How a client proves itself to Kafka and checks the broker: TLS and SASL settings.

One model for every client the project has: the confluent-kafka producers, consumers and
admin client (librdkafka properties), aiokafka (bench tools), Faust (``streams`` turns it into
``broker_credentials``) and the SDK's ``Publisher``. It lives in ``schemas`` because the
SDK, which services embed, may import nothing else of the project.

>>> s = KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
...                   sasl_username="worker", sasl_password="s3cret",
...                   ssl_cafile=Path("/etc/kafka/ca.pem"))
>>> s
KafkaSecurity(security_protocol='SASL_SSL', sasl_mechanism='SCRAM-SHA-512', \
sasl_username='worker', sasl_password=SecretStr('**********'), \
ssl_cafile=PosixPath('/etc/kafka/ca.pem'), ssl_certfile=None, ssl_keyfile=None)
>>> sorted(s.librdkafka())
['sasl.mechanism', 'sasl.password', 'sasl.username', 'security.protocol', 'ssl.ca.location']
>>> KafkaSecurity().librdkafka()  # the default: plain TCP, nothing to add
{}
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, SecretStr, model_validator

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaSecurity(BaseModel):
    """TLS (server CA, optional client certificate) and SASL (SCRAM or PLAIN) of a client."""

    model_config = {"frozen": True}

    security_protocol: Protocol = "PLAINTEXT"  # LOGWARDEN_KAFKA_SECURITY_PROTOCOL
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"  # LOGWARDEN_KAFKA_SASL_MECHANISM
    sasl_username: str = ""  # LOGWARDEN_KAFKA_SASL_USERNAME
    sasl_password: SecretStr = SecretStr("")  # LOGWARDEN_KAFKA_SASL_PASSWORD
    ssl_cafile: Path | None = None  # LOGWARDEN_KAFKA_SSL_CAFILE: PEM CA(s); None = system's
    ssl_certfile: Path | None = None  # LOGWARDEN_KAFKA_SSL_CERTFILE: client cert (mTLS), PEM
    ssl_keyfile: Path | None = None  # LOGWARDEN_KAFKA_SSL_KEYFILE: its private key, PEM

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.sasl and not (self.sasl_username and self.sasl_password.get_secret_value()):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username "
                             "and sasl_password")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (a client certificate "
                             "and its key)")
        if self.ssl_certfile is not None and not self.tls:
            raise ValueError("a client certificate needs security_protocol SSL or SASL_SSL")
        return self

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted and the broker's certificate checked."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        """Whether the client logs in with a user name and password."""
        return self.security_protocol.startswith("SASL_")

    def librdkafka(self) -> dict[str, str]:
        """The confluent-kafka (librdkafka) properties; empty for PLAINTEXT."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        conf: dict[str, str] = {"security.protocol": self.security_protocol}
        if self.sasl:
            conf |= {"sasl.mechanism": self.sasl_mechanism,
                     "sasl.username": self.sasl_username,
                     "sasl.password": self.sasl_password.get_secret_value()}
        if self.tls:
            if self.ssl_cafile is not None:
                conf["ssl.ca.location"] = str(self.ssl_cafile)
            if self.ssl_certfile is not None and self.ssl_keyfile is not None:
                conf["ssl.certificate.location"] = str(self.ssl_certfile)
                conf["ssl.key.location"] = str(self.ssl_keyfile)
        return conf

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client TLS context (hostname checked), None without TLS."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile is not None else None)
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            ctx.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return ctx

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's consumers, producers and admin client."""
        kw: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.tls:
            kw["ssl_context"] = self.ssl_context()
        if self.sasl:
            kw |= {"sasl_mechanism": self.sasl_mechanism,
                   "sasl_plain_username": self.sasl_username,
                   "sasl_plain_password": self.sasl_password.get_secret_value()}
        return kw
