"""``logwarden.logs.v1``: one log event."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.base import ContractModel
from schemas.common import ServiceName, ShortStr, Timestamp

Level = Literal["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "FATAL"]
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL", "FATAL"})
_LEVEL_ALIASES = {"WARNING": "WARN", "ERR": "ERROR", "CRIT": "CRITICAL", "TRACE": "DEBUG"}
Duration = Annotated[float, Field(ge=0, le=86_400_000)]


class Http(BaseModel):
    """The HTTP request a log line is about."""

    model_config = ConfigDict(extra="allow")
    method: ShortStr | None = None
    route: Annotated[str, Field(max_length=1024)] | None = None
    status: Annotated[int, Field(ge=0, le=999)] | None = None
    duration_ms: Duration | None = None


class Peer(BaseModel):
    """An outbound call to another service."""

    model_config = ConfigDict(extra="allow")
    service: ServiceName
    operation: Annotated[str, Field(max_length=1024)] | None = None
    duration_ms: Duration | None = None
    ok: bool | None = None


class User(BaseModel):
    """Security context: who did what, and how it went."""

    model_config = ConfigDict(extra="allow")
    id: ShortStr | None = None
    ip: ShortStr | None = None
    action: ShortStr | None = None
    outcome: ShortStr | None = None


class LogEvent(ContractModel):
    """A log event as any producer may send it."""

    ts: Timestamp
    service: ServiceName
    level: Level
    message: str
    host: ShortStr | None = None
    logger: ShortStr | None = None
    env: ShortStr | None = None
    trace_id: ShortStr | None = None
    span_id: ShortStr | None = None
    event_id: ShortStr | None = None
    http: Http | None = None
    peer: Peer | None = None
    user: User | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("level", mode="before")
    @classmethod
    def _normalise_level(cls, v: Any) -> Any:
        if isinstance(v, str):
            up = v.strip().upper()
            return _LEVEL_ALIASES.get(up, up)
        return v

    @field_validator("attrs", mode="before")
    @classmethod
    def _null_attrs(cls, v: Any) -> Any:
        return {} if v is None else v  # "attrs": null means no attributes

    @property
    def is_error(self) -> bool:
        return self.level in ERROR_LEVELS
