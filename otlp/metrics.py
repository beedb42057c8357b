"""OTLP metrics onto ``logwarden.metrics.v1`` points.

| OTLP | contract points |
|---|---|
| Gauge | one ``gauge`` per data point |
| Sum | ``counter`` when monotonic, else ``gauge`` (``attrs.temporality``: delta or cumulative) |
| Histogram, ExponentialHistogram | ``<name>_count`` and ``<name>_sum`` counters |
| Summary | ``<name>_count``, ``<name>_sum`` counters and ``<name>`` gauges labelled ``quantile`` |

Data point attributes are the labels (values as text, at most 32, as the contract allows);
the resource gives ``service`` and its other attributes go to ``attrs.resource``. Names
keep ``[A-Za-z0-9_:.]``; other characters become ``_``. A point that does not validate
(e.g. NaN, too many labels) is rejected with its reason; the rest of the request lands.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    Metric,
)

from otlp.attributes import Mapped, Resource, attributes, nanos_to_ms
from schemas.base import validate
from schemas.errors import InvalidEvent
from schemas.metrics import MetricPoint

_NOT_NAME = re.compile(r"[^A-Za-z0-9_:.]")
_NO_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_TEMPORALITY = {AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA: "delta",
                AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE: "cumulative"}


def metric_name(name: str) -> str:
    """An OTLP instrument name as a contract metric name.

    >>> metric_name("http.server.request.duration"), metric_name("9 lives/s")
    ('http.server.request.duration', '_9_lives_s')
    """
    out = _NOT_NAME.sub("_", name)
    if not out or not (out[0].isascii() and (out[0].isalpha() or out[0] in "_:")):
        out = "_" + out
    return out[:200]


def _labels(kvs: Any) -> dict[str, str]:
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode()
            for k, v in attributes(kvs).items()}


# name, kind, value, ts ms, labels, attrs
Point = tuple[str, str, float, int, dict[str, str], dict[str, Any]]


def points(m: Metric, now_ms: int) -> Iterator[Point]:
    """The contract points of one OTLP metric: (name, kind, value, ts ms, labels, attrs)."""
    name, kind = metric_name(m.name), m.WhichOneof("data")
    if kind in ("gauge", "sum"):
        data = m.gauge if kind == "gauge" else m.sum
        point_kind, extra = "gauge", {}
        if kind == "sum":
            point_kind = "counter" if m.sum.is_monotonic else "gauge"
            if t := _TEMPORALITY.get(m.sum.aggregation_temporality):
                extra = {"temporality": t}
        for p in data.data_points:
            if p.flags & _NO_VALUE:
                continue
            v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
            yield name, point_kind, v, nanos_to_ms(p.time_unix_nano) or now_ms, \
                _labels(p.attributes), extra
    elif kind in ("histogram", "exponential_histogram", "summary"):
        hist = getattr(m, kind)
        temporality = int(getattr(hist, "aggregation_temporality", 0))
        extra = {"temporality": t} if (t := _TEMPORALITY.get(temporality)) else {}  # type: ignore[call-overload]
        for p in hist.data_points:
            if p.flags & _NO_VALUE:
                continue
            ms, labels = nanos_to_ms(p.time_unix_nano) or now_ms, _labels(p.attributes)
            yield f"{name}_count", "counter", float(p.count), ms, labels, extra
            if kind == "summary" or p.HasField("sum"):
                yield f"{name}_sum", "counter", p.sum, ms, labels, extra
            if kind == "summary":
                for q in p.quantile_values:
                    yield name, "gauge", q.value, ms, {**labels, "quantile": f"{q.quantile:g}"}, {}


def map_metrics(req: ExportMetricsServiceRequest, now_ms: int) -> Mapped:
    """Every valid data point of a request as contract JSON; the others counted with a reason."""
    out = Mapped()
    for rm in req.resource_metrics:
        res = Resource.of(attributes(rm.resource.attributes))
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.WhichOneof("data") is None:
                    out.reject(f"metric {m.name!r}: no data")
                    continue
                for name, kind, v, ms, labels, extra in points(m, now_ms):
                    p: dict[str, Any] = {"ts": ms, "service": res.service, "name": name,
                                         "value": v, "kind": kind, "labels": labels}
                    if m.unit:
                        p["unit"] = m.unit
                    attrs = {**extra, **({"resource": res.rest} if res.rest else {})}
                    if attrs:
                        p["attrs"] = attrs
                    try:
                        validate(MetricPoint, p, stage="otlp.metrics")
                    except InvalidEvent as exc:
                        out.reject(f"metric {m.name!r}: {exc.reason}")
                        continue
                    out.records.append((res.service, orjson.dumps(p)))
    return out
