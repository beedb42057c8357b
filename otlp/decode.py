"""OTLP/HTTP bodies in and out: protobuf or JSON, and the export responses.

OTLP/JSON is the protobuf JSON mapping with two differences that ``json_format`` does not
know: trace and span ids are hex (not base64), and enums may be given as integers (which it
accepts). The ids are turned into base64 before parsing, so one code path maps both forms.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from schemas.errors import OtlpRequestError

Format = Literal["protobuf", "json"]
CONTENT_TYPES: dict[str, Format] = {"application/x-protobuf": "protobuf",
                                     "application/json": "json"}
_ID_KEYS = frozenset({"traceId", "spanId", "trace_id", "span_id"})
M = TypeVar("M", bound=Message)


def content_format(content_type: str) -> Format | None:
    """The body format of a ``Content-Type`` (parameters ignored), None if unsupported."""
    return CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def _hex_ids_to_base64(node: Any) -> Any:
    """A copy of an OTLP/JSON tree with its hex trace/span ids in protobuf's base64."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in _ID_KEYS and isinstance(v, str):
                try:
                    v = base64.b64encode(bytes.fromhex(v)).decode()
                except ValueError:
                    raise OtlpRequestError(400, f"{k} {v[:40]!r} is not hex") from None
            else:
                v = _hex_ids_to_base64(v)
            out[k] = v
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def parse(message: type[M], body: bytes, fmt: Format) -> M:
    """The request message of ``body``, or OtlpRequestError(400) saying what is wrong."""
    out = message()
    if fmt == "protobuf":
        try:
            out.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpRequestError(400, f"the body is not a valid {message.__name__}: "
                                   f"{exc}") from None
        return out  # type: ignore[no-any-return]
    try:
        tree = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpRequestError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(tree, dict):
        raise OtlpRequestError(400, f"expected a JSON object, got {type(tree).__name__}")
    try:  # receivers must ignore fields they do not know (newer senders)
        json_format.ParseDict(_hex_ids_to_base64(tree), out, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise OtlpRequestError(400, f"not a valid OTLP/JSON {message.__name__}: "
                               f"{str(exc)[:300]}") from None
    return out  # type: ignore[no-any-return]


def parse_logs(body: bytes, fmt: Format) -> ExportLogsServiceRequest:
    """An ``ExportLogsServiceRequest`` from a /v1/logs body."""
    return parse(ExportLogsServiceRequest, body, fmt)


def parse_metrics(body: bytes, fmt: Format) -> ExportMetricsServiceRequest:
    """An ``ExportMetricsServiceRequest`` from a /v1/metrics body."""
    return parse(ExportMetricsServiceRequest, body, fmt)


def encode(message: Message, fmt: Format) -> bytes:
    """A response message in the request's format."""
    if fmt == "protobuf":
        return bytes(message.SerializeToString())
    return orjson.dumps(json_format.MessageToDict(message))


def logs_response(rejected: int, error: str, fmt: Format) -> bytes:
    """The /v1/logs answer; ``partial_success`` set when records were rejected."""
    resp = ExportLogsServiceResponse()
    if rejected or error:
        resp.partial_success.CopyFrom(ExportLogsPartialSuccess(
            rejected_log_records=rejected, error_message=error))
    return encode(resp, fmt)


def metrics_response(rejected: int, error: str, fmt: Format) -> bytes:
    """The /v1/metrics answer; ``partial_success`` set when points were rejected."""
    resp = ExportMetricsServiceResponse()
    if rejected or error:
        resp.partial_success.CopyFrom(ExportMetricsPartialSuccess(
            rejected_data_points=rejected, error_message=error))
    return encode(resp, fmt)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def status_body(code: int, message: str, fmt: Format) -> bytes:
    """A ``google.rpc.Status`` (code, message): the body OTLP/HTTP gives a failed request.

    Written by hand (two fields) rather than pulling in googleapis-common-protos."""
    if fmt == "json":
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def hex_id(raw: bytes) -> str | None:
    """A trace or span id as lower-case hex; None for the empty or all-zero (invalid) id."""
    return binascii.hexlify(raw).decode() if raw.strip(b"\x00") else None
