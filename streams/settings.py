"""All configuration, built once by the CLI from the environment (``LOGWARDEN_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerting.config import AlertingSettings
from categorisation.settings import CategorisationSettings
from detectors.settings import DetectionSettings
from sinks.clickhouse.settings import ClickHouseSettings
from web.settings import WebSettings


class KafkaSettings(BaseModel):
    """Where the broker is. An empty ``bootstrap`` means: start and use the local one."""

    model_config = {"frozen": True}

    bootstrap: str = ""  # LOGWARDEN_KAFKA_BOOTSTRAP
    local_port: int = 19092  # LOGWARDEN_KAFKA_LOCAL_PORT, used when bootstrap is empty
    partitions: int = Field(default=4, ge=1)  # partitions of the topics we create
    replication: int = Field(default=1, ge=1)
    cache_dir: Path | None = None  # LOGWARDEN_KAFKA_CACHE_DIR: jars; None = <repo>/.cache/kafka

    @property
    def embedded(self) -> bool:
        return not self.bootstrap

    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"127.0.0.1:{self.local_port}"


class StreamSettings(BaseModel):
    """Faust worker knobs."""

    model_config = {"frozen": True}

    app_id: str = "logwarden"  # consumer group and changelog prefix
    web_port: int = 6066  # worker HTTP API, dashboards and /metrics
    web_host: str = "127.0.0.1"
    window_grace_s: float = Field(default=30.0, ge=0)  # how late an event may be
    batch_size: int = Field(default=2000, ge=1)  # messages per consumer batch
    max_dead_letter_ratio: float = Field(default=0.9, gt=0, le=1)


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
