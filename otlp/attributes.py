"""What logs and metrics share: OTLP values as JSON, resources as service/host/env, results."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from schemas.common import SERVICE_RE

UNKNOWN_SERVICE = "unknown_service"  # what OpenTelemetry calls a resource without a name
_NOT_SERVICE = re.compile(r"[^A-Za-z0-9._-]")
MAX_ERRORS = 5  # reasons quoted in partial_success.error_message
# Resource attributes that become contract fields (the rest stay in attrs.resource).
SERVICE_KEY = "service.name"
HOST_KEYS = ("host.name", "k8s.pod.name")
ENV_KEYS = ("deployment.environment.name", "deployment.environment")
MAPPED_RESOURCE_KEYS = frozenset({SERVICE_KEY, "host.name", *ENV_KEYS})


def value(v: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain JSON (bytes as base64 text)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key-values as a dict (a repeated key: the last wins, as in the SDKs)."""
    return {kv.key: value(kv.value) for kv in kvs}


def service_name(raw: Any) -> str:
    """``service.name`` as a contract service name: other characters become ``_``.

    >>> service_name("unknown_service:python"), service_name(None)
    ('unknown_service_python', 'unknown_service')
    """
    if not isinstance(raw, str) or not raw:
        return UNKNOWN_SERVICE
    if SERVICE_RE.match(raw):
        return raw
    name = _NOT_SERVICE.sub("_", raw).lstrip("._-")[:128]
    return name or UNKNOWN_SERVICE


@dataclass(frozen=True)
class Resource:
    """The contract fields a resource gives every record under it."""

    service: str
    host: str | None
    env: str | None
    rest: dict[str, Any]  # unmapped resource attributes, kept in attrs.resource

    @classmethod
    def of(cls, attrs: dict[str, Any]) -> Resource:
        """Map ``service.name``, ``host.name`` (else the pod) and the deployment environment."""
        host = next((str(attrs[k]) for k in HOST_KEYS if attrs.get(k)), None)
        env = next((str(attrs[k]) for k in ENV_KEYS if attrs.get(k)), None)
        rest = {k: v for k, v in attrs.items() if k not in MAPPED_RESOURCE_KEYS}
        return cls(service_name(attrs.get(SERVICE_KEY)), host and host[:256],
                   env and env[:256], rest)


@dataclass
class Mapped:
    """Contract messages of one request (key = service) and what was rejected, and why."""

    records: list[tuple[str, bytes]] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        """Count one rejected record; the first few reasons are quoted back to the sender."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(reason)

    @property
    def error_message(self) -> str:
        """The ``partial_success.error_message``: the first reasons and how many more."""
        if not self.rejected:
            return ""
        more = self.rejected - len(self.errors)
        return "; ".join(self.errors) + (f" (and {more} more)" if more > 0 else "")


def nanos_to_ms(ns: int) -> int:
    """Epoch nanoseconds as epoch milliseconds (the contract's integer timestamps)."""
    return ns // 1_000_000
