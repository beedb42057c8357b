"""Settings of the API, dashboards and reports (``LOGWARDEN_WEB_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class WebSettings(BaseModel):
    """Token file, whether reads need a token, the cluster API port, dashboard refresh."""

    model_config = {"frozen": True}

    tokens_file: Path | None = None  # LOGWARDEN_WEB_TOKENS_FILE; None = <data dir>/api_tokens.json
    read_requires_token: bool = False  # LOGWARDEN_WEB_READ_REQUIRES_TOKEN: GETs need a viewer
    api_host: str = "127.0.0.1"  # `logwarden api` (cluster mode) listens here
    api_port: int = 6068
    refresh_s: float = Field(default=3.0, gt=0, le=5)  # dashboards poll this often
    # Host names the API answers to besides loopback (DNS rebinding guard), JSON list:
    # LOGWARDEN_WEB_ALLOWED_HOSTS='["logwarden.example.com"]'; "*" turns the check off.
    allowed_hosts: tuple[str, ...] = ()
    # LOGWARDEN_WEB_COMPLIANCE_FILE: response times the compliance report holds alerts to
    compliance_file: Path = Path("deploy/config/compliance.yaml")
    # POST /api/query: who may run SQL, and the limits ClickHouse enforces on each query.
    query_role: Literal["viewer", "responder", "admin"] = "responder"  # _QUERY_ROLE
    query_timeout_s: int = Field(default=60, ge=1, le=3600)  # max_execution_time
    query_max_memory_mb: int = Field(default=1024, ge=16)  # max_memory_usage
    query_max_threads: int = Field(default=2, ge=1, le=64)  # max_threads: cores left to ingest
    query_concurrency: int = Field(default=2, ge=1, le=32)  # queries at once; more wait ...
    query_queue: int = Field(default=8, ge=0, le=1000)  # ... up to this many, then 429

    def host_allowed(self, host: str) -> bool:
        """Whether a request's Host (without port) is one this API answers to."""
        h = host.lower().rstrip(".")
        return "*" in self.allowed_hosts or h in LOOPBACK_HOSTS or h in (
            a.lower().rstrip(".") for a in self.allowed_hosts)

    def token_path(self, data_dir: Path) -> Path:
        """Where the hashed API tokens live."""
        return self.tokens_file or data_dir / "api_tokens.json"
