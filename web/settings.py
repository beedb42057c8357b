"""Settings of the API, dashboards and reports (``LOGWARDEN_WEB_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class WebSettings(BaseModel):
    """Token file, whether reads need a token, the cluster API port, dashboard refresh."""

    model_config = {"frozen": True}

    tokens_file: Path | None = None  # LOGWARDEN_WEB_TOKENS_FILE; None = <data dir>/api_tokens.json
    read_requires_token: bool = False  # LOGWARDEN_WEB_READ_REQUIRES_TOKEN: GETs need a viewer
    api_host: str = "127.0.0.1"  # `logwarden api` (cluster mode) listens here
    api_port: int = 6068
    refresh_s: float = Field(default=3.0, gt=0, le=5)  # dashboards poll this often

    def token_path(self, data_dir: Path) -> Path:
        """Where the hashed API tokens live."""
        return self.tokens_file or data_dir / "api_tokens.json"
