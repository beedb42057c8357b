"""OTLP log records onto ``logwarden.logs.v1`` (the full table: docs/otlp.md).

``service.name`` → service, severity → level, body → message, scope → logger, trace and
span ids as hex, ``http.*`` → http, ``peer.service`` → peer, ``enduser.id`` and
``client.address`` → user, everything else → attrs (resource attributes under
``attrs.resource``). The event id is ``log.record.uid`` or a hash of the record and its
place in the request, so an exporter's retry of the same request is deduplicated.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otlp.attributes import Mapped, Resource, attributes, nanos_to_ms, service_name, value
from otlp.decode import hex_id
from schemas.base import validate
from schemas.common import MAX_MESSAGE_BYTES
from schemas.errors import InvalidEvent
from schemas.logs import LogEvent

# Severity numbers of the OpenTelemetry log data model, by the first number of each range.
_SEVERITY = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (1, "DEBUG"))
_TEXT_LEVELS = {"TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "NOTICE": "INFO",
                "WARN": "WARN", "WARNING": "WARN", "ERROR": "ERROR", "ERR": "ERROR",
                "CRITICAL": "CRITICAL", "CRIT": "CRITICAL", "FATAL": "FATAL",
                "ALERT": "FATAL", "EMERGENCY": "FATAL"}
_HTTP = {"method": ("http.request.method", "http.method"),
         "route": ("http.route", "url.path", "http.target"),
         "status": ("http.response.status_code", "http.status_code")}
_DURATION_S = "http.server.request.duration"


def level(number: int, text: str) -> str:
    """The contract level of an OTLP severity: the number when set, else the text, else INFO.

    >>> level(17, ""), level(0, "warning"), level(0, ""), level(3, "TRACE")
    ('ERROR', 'WARN', 'INFO', 'DEBUG')
    """
    for first, name in _SEVERITY:
        if first <= number <= 24:
            return name
    return _TEXT_LEVELS.get(text.strip().upper(), "INFO")


def _pop(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The first of ``keys`` present (all of them removed from ``attrs``)."""
    found = None
    for k in keys:
        v = attrs.pop(k, None)
        if found is None and v is not None:
            found = v
    return found


def _http(attrs: dict[str, Any]) -> dict[str, Any] | None:
    out = {name: v for name, keys in _HTTP.items() if (v := _pop(attrs, keys)) is not None}
    if "status" in out:
        try:
            out["status"] = int(out["status"])
        except (TypeError, ValueError):
            attrs["http.status_code"] = out.pop("status")  # kept, not guessed
    seconds = attrs.pop(_DURATION_S, None)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        out["duration_ms"] = seconds * 1000.0
    elif seconds is not None:
        attrs[_DURATION_S] = seconds
    for k in ("method", "route"):
        if k in out:
            out[k] = str(out[k])
    return out or None


def _event_id(attrs: dict[str, Any], service: str, scope: str, record: LogRecord,
              index: int) -> str:
    uid = attrs.pop("log.record.uid", None)
    if isinstance(uid, str) and uid:
        return uid[:256]
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{service}\x00{scope}\x00{index}\x00".encode())
    h.update(record.SerializeToString(deterministic=True))
    return "otlp-" + h.hexdigest()


def log_event(record: LogRecord, res: Resource, scope: str, index: int,
              now_ms: int) -> dict[str, Any]:
    """One log record as a ``logwarden.logs.v1`` object (not yet validated)."""
    attrs = attributes(record.attributes)
    ns = record.time_unix_nano or record.observed_time_unix_nano
    body = value(record.body)
    e: dict[str, Any] = {
        "ts": nanos_to_ms(ns) if ns else now_ms,
        "service": res.service,
        "level": level(record.severity_number, record.severity_text),
        "message": body if isinstance(body, str) else "" if body is None
        else orjson.dumps(body).decode(),
        "event_id": _event_id(attrs, res.service, scope, record, index),
    }
    for k, v in (("host", res.host), ("env", res.env), ("logger", scope[:256] or None),
                 ("trace_id", hex_id(record.trace_id)), ("span_id", hex_id(record.span_id))):
        if v:
            e[k] = v
    if http := _http(attrs):
        e["http"] = http
    if (peer := attrs.pop("peer.service", None)) is not None:
        e["peer"] = {"service": service_name(peer)}
    user = {k: str(v) for k, v in (("id", attrs.pop("enduser.id", None)),
                                   ("ip", attrs.pop("client.address", None))) if v is not None}
    if user:
        e["user"] = user
    if record.event_name:
        attrs["event.name"] = record.event_name
    if res.rest:
        attrs["resource"] = res.rest
    if attrs:
        e["attrs"] = attrs
    return e


def map_logs(req: ExportLogsServiceRequest, now_ms: int) -> Mapped:
    """Every valid record of a request as contract JSON; the others counted with a reason."""
    out = Mapped()
    index = 0
    for rl in req.resource_logs:
        res = Resource.of(attributes(rl.resource.attributes))
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for record in sl.log_records:
                index += 1
                try:
                    e = log_event(record, res, scope, index, now_ms)
                    validate(LogEvent, e, stage="otlp.logs")
                    raw = orjson.dumps(e)
                except InvalidEvent as exc:
                    out.reject(f"log record {index}: {exc.reason}")
                    continue
                if len(raw) > MAX_MESSAGE_BYTES:
                    out.reject(f"log record {index}: {len(raw)} bytes as JSON, over the "
                               f"{MAX_MESSAGE_BYTES} byte limit")
                    continue
                out.records.append((res.service, raw))
    return out
