"""All configuration, built once by the CLI from the environment (``LOGWARDEN_*``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerting.config import AlertingSettings
from audit.settings import AuditSettings
from categorisation.settings import CategorisationSettings
from detectors.settings import DetectionSettings
from incidents.engine import IncidentSettings
from otlp.settings import OtlpSettings
from privacy.settings import PrivacySettings
from schemas.kafka_security import KafkaSecurity
from sinks.clickhouse.settings import ClickHouseSettings
from web.settings import WebSettings


def client_id(app_id: str, role: str) -> str:
    """The Kafka client id of one client of this process: the broker logs and quotas, and an
    operator reading the consumer group, see which host, process and stage it is."""
    return f"{app_id}-{role}-{socket.gethostname()}-{os.getpid()}"


class KafkaSettings(KafkaSecurity):
    """Where the broker is and how to log in (TLS and SASL fields: ``KafkaSecurity``,
    ``LOGWARDEN_KAFKA_SECURITY_PROTOCOL`` ...). An empty ``bootstrap`` means: start and use
    the local one."""

    bootstrap: str = ""  # LOGWARDEN_KAFKA_BOOTSTRAP
    local_port: int = 19092  # LOGWARDEN_KAFKA_LOCAL_PORT, used when bootstrap is empty
    partitions: int = Field(default=4, ge=1)  # partitions of the topics we create
    # copies of each topic partition: "auto" = min(3, brokers in the cluster), resolved
    # when a worker starts (`streams.topics.resolve_replication`); or a number
    replication: int | Literal["auto"] = "auto"  # LOGWARDEN_KAFKA_REPLICATION
    cache_dir: Path | None = None  # LOGWARDEN_KAFKA_CACHE_DIR: jars; None = <repo>/.cache/kafka

    @property
    def embedded(self) -> bool:
        return not self.bootstrap

    @property
    def replicas(self) -> int:
        """The replication factor as a number ("auto" not yet resolved counts as 1)."""
        return 1 if self.replication == "auto" else max(1, self.replication)

    def min_insync(self) -> int:
        """min.insync.replicas of our topics: 2 once there are 3 copies, else 1."""
        return 2 if self.replicas >= 3 else 1

    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"127.0.0.1:{self.local_port}"

    def client_config(self) -> dict[str, str]:
        """confluent-kafka properties: the bootstrap servers plus TLS and SASL."""
        return {"bootstrap.servers": self.bootstrap_servers(), **self.librdkafka()}

    def aiokafka_config(self) -> dict[str, Any]:
        """aiokafka keyword arguments: the bootstrap servers plus TLS and SASL."""
        return {"bootstrap_servers": self.bootstrap_servers(), **self.aiokafka()}


class StreamSettings(BaseModel):
    """Faust worker knobs."""

    model_config = {"frozen": True}

    app_id: str = "logwarden"  # consumer group and changelog prefix
    web_port: int = 6066  # worker HTTP API, dashboards and /metrics
    web_host: str = "127.0.0.1"
    window_grace_s: float = Field(default=30.0, ge=0)  # how late an event may be
    batch_size: int = Field(default=2000, ge=1)  # messages per consumer batch
    max_dead_letter_ratio: float = Field(default=0.9, gt=0, le=1)
    # SIGTERM to exit: stages hand over within ``stop_timeout_s``; past ``grace_s`` the
    # process exits anyway (nothing unwritten was committed, so it replays on the next
    # start). Keep it under the orchestrator's own grace period (Kubernetes: 30 s).
    stop_timeout_s: float = Field(default=15.0, gt=0)  # LOGWARDEN_STREAM_STOP_TIMEOUT_S
    grace_s: float = Field(default=25.0, gt=0)  # LOGWARDEN_STREAM_GRACE_S
    # An event time this far ahead of its arrival is dead-lettered (a producer's clock is
    # wrong); closer ones are kept, and no watermark passes the arrival clock anyway.
    max_future_s: float = Field(default=300.0, ge=0)  # LOGWARDEN_STREAM_MAX_FUTURE_S
    # Series caps (streams/cardinality.py): past them new names fold into ``other``.
    max_services: int = Field(default=10_000, ge=1)
    max_routes_per_service: int = Field(default=500, ge=1)
    max_routes: int = Field(default=50_000, ge=1)
    max_series_per_service: int = Field(default=2_000, ge=1)  # metric label series
    max_series: int = Field(default=200_000, ge=1)
    max_instances_per_service: int = Field(default=64, ge=1)  # pods/hosts with latency series
    # Allocations between the garbage collector's young-generation passes (Python's default
    # 700): the ingest loop allocates per event and the collector took ~8 % of it; 0 keeps
    # Python's default. LOGWARDEN_STREAM_GC_THRESHOLD
    gc_threshold: int = Field(default=10_000, ge=0)


class Settings(BaseSettings):
    """Everything logwarden reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="LOGWARDEN_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        frozen=True,
    )

    data_dir: Path = Path(".data")  # LOGWARDEN_DATA_DIR: chDB files, Faust tables, Kafka logs
    datasets_dir: Path = Path("../shared/datasets")  # LOGWARDEN_DATASETS_DIR, for eval/bench
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    stream: StreamSettings = StreamSettings()
    categorise: CategorisationSettings = CategorisationSettings()  # LOGWARDEN_CATEGORISE_*
    detect: DetectionSettings = DetectionSettings()  # LOGWARDEN_DETECT_*
    alerting: AlertingSettings = AlertingSettings()  # LOGWARDEN_ALERTING_*
    web: WebSettings = WebSettings()  # LOGWARDEN_WEB_*
    otlp: OtlpSettings = OtlpSettings()  # LOGWARDEN_OTLP_*: the OTLP/HTTP receiver
    privacy: PrivacySettings = PrivacySettings()  # LOGWARDEN_PRIVACY_*
    audit: AuditSettings = AuditSettings()  # LOGWARDEN_AUDIT_*
    incidents: IncidentSettings = IncidentSettings()  # LOGWARDEN_INCIDENTS_*
    # The CLI's API token (`logwarden query`, reports through the worker): LOGWARDEN_TOKEN,
    # else the first line of LOGWARDEN_TOKEN_FILE (None: <data dir>/cli_token, which
    # `logwarden run` and `logwarden token create --save` write, mode 0600).
    token: SecretStr = SecretStr("")
    token_file: Path | None = None

    def cli_token_path(self) -> Path:
        """Where the CLI keeps its API token."""
        return (self.token_file or self.data_dir / "cli_token").expanduser()

    def api_token(self, given: str | None = None) -> str | None:
        """The token for the worker API: ``given`` (--token), LOGWARDEN_TOKEN, the file."""
        if given:
            return given
        if self.token.get_secret_value():
            return self.token.get_secret_value()
        try:
            lines = self.cli_token_path().read_text().split()
        except OSError:
            return None
        return lines[0] if lines else None
