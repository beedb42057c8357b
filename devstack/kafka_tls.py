"""TLS and SASL for the local broker: a throwaway CA, a broker certificate, SCRAM users.

``LocalKafka(..., security=BrokerSecurity.create(dir, {"worker": "secret"}))`` starts the
broker with one ``SASL_SSL`` listener (SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN) on its port:
the certificate is for 127.0.0.1 and localhost, signed by a CA made here (PEM files, which
Kafka reads with ``ssl.keystore.type=PEM``), and the SCRAM users are written into the
cluster metadata when the log directory is formatted (``kafka-storage format --add-scram``).
The KRaft controller listener stays plain on loopback. For tests and local trials; a real
cluster has its own PKI.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import SetupError
from schemas.kafka_security import KafkaSecurity

MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
CERT_DAYS = 30


@dataclass(frozen=True)
class Pki:
    """PEM files: the CA certificate clients trust, the broker's key + certificate."""

    ca: Path
    cert: Path
    key: Path
    keystore: Path  # the broker's key then its certificate chain, one PEM file

    @classmethod
    def create(cls, folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
               ca_name: str = "logwarden test CA") -> Pki:
        """A new CA and a broker certificate for ``hosts`` under ``folder`` (openssl)."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SetupError("`openssl` is needed to make the local broker's certificates")
        folder.mkdir(parents=True, exist_ok=True)
        ca_key, ca, key, csr, cert = (folder / n for n in (
            "ca.key", "ca.pem", "broker.key", "broker.csr", "broker.pem"))
        san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}"
                       for h in hosts)
        ext = folder / "broker.ext"
        ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n")
        for cmd in (
            ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(ca_key)],
            ["req", "-x509", "-new", "-key", str(ca_key), "-days", str(CERT_DAYS),
             "-subj", f"/CN={ca_name}", "-out", str(ca)],
            # PKCS#8 and unencrypted: what Kafka's PEM keystore reads without a password
            ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(key)],
            ["req", "-new", "-key", str(key), "-subj", f"/CN={hosts[0]}", "-out", str(csr)],
            ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", str(CERT_DAYS), "-extfile", str(ext),
             "-out", str(cert)],
        ):
            out = subprocess.run([openssl, *cmd], capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                raise SetupError(f"openssl {cmd[0]} failed: {out.stderr.strip()}")
        keystore = folder / "broker.keystore.pem"
        keystore.write_text(key.read_text() + cert.read_text() + ca.read_text())
        for secret in (ca_key, key, keystore):
            secret.chmod(0o600)
        return cls(ca=ca, cert=cert, key=key, keystore=keystore)


def _jaas_quote(value: str) -> str:
    if '"' in value or "\\" in value or "\n" in value:
        raise ValueError("SASL user names and passwords may not contain quotes, backslashes "
                         "or newlines here")
    return f'"{value}"'


@dataclass(frozen=True)
class BrokerSecurity:
    """A SASL_SSL listener: its PKI and the users (name -> password) allowed in."""

    pki: Pki
    users: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("a SASL_SSL broker needs at least one user")

    @classmethod
    def create(cls, folder: Path, users: Mapping[str, str]) -> BrokerSecurity:
        """A new PKI under ``folder`` and these users."""
        return cls(Pki.create(folder), dict(users))

    @property
    def broker_user(self) -> str:
        """The user the broker logs in as on its own listener (the first one)."""
        return next(iter(self.users))

    def server_properties(self, port: int, controller_port: int) -> dict[str, str]:
        """The broker settings that replace the plaintext listener."""
        admin, password = self.broker_user, self.users[self.broker_user]
        scram = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
                 f"username={_jaas_quote(admin)} password={_jaas_quote(password)};")
        plain_users = " ".join(f"user_{name}={_jaas_quote(pw)}"
                               for name, pw in self.users.items())
        plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                 f"username={_jaas_quote(admin)} password={_jaas_quote(password)} "
                 f"{plain_users};")
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": ",".join(MECHANISMS),
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.plain.sasl.jaas.config": plain,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.pki.keystore),
            "ssl.truststore.type": "PEM",  # the broker's own client trusts the CA too
            "ssl.truststore.location": str(self.pki.ca),
        }

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users."""
        args = []
        for name, pw in self.users.items():
            for mech in MECHANISMS[:2]:
                args += ["--add-scram", f"{mech}=[name={name},password={pw}]"]
        return args

    def client(self, user: str | None = None, password: str | None = None,
               mechanism: str = "SCRAM-SHA-512") -> KafkaSecurity:
        """Client settings for ``user`` (default: the first), trusting this CA."""
        name = user or self.broker_user
        return KafkaSecurity.model_validate({
            "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
            "sasl_username": name, "sasl_password": password or self.users[name],
            "ssl_cafile": self.pki.ca})
