"""Evidence in words: what a responder reads at a glance on a page or in an incident.

A page says what moved, by how much, against what is normal, in the units a person
thinks in, rounded to two significant figures: "checkout p95 latency 1.2 s, normal
180-240 ms", not "anomalous (1.0 vs expected 0.0203334424226772)".

Units come from what the field *is*, never from its magnitude: latencies (``p50``,
``p95``, ``p99``, outbound-call ``duration``) are milliseconds on the wire, ``error_rate``
is a fraction, ``rate_per_s`` a rate; a metric's unit comes from its name's suffix, the
Prometheus naming convention (``_seconds``, ``_bytes``, ``_ratio``, ``_percent``, ``_ms``).
Anything else is a plain number.

>>> describe_anomaly({"service": "checkout", "scope": "service", "feature": "p95",
...                   "observed": 1234.0, "lo": 180.2, "hi": 243.0, "expected": 210.0})
'checkout p95 latency 1.2 s, normal 180-240 ms'
>>> describe_anomaly({"service": "catalog", "scope": "metric", "name": "queue_depth",
...                   "feature": "mean", "observed": 1.0, "expected": 0.0203334424226772})
'catalog queue_depth 1, normal about 0.02'
>>> describe_anomaly({"service": "search", "scope": "instance", "series": "search@search-2",
...                   "feature": "p50", "observed": 161.0, "lo": 28.0, "hi": 71.5})
'search pod search-2 p50 latency 160 ms, its siblings 28-72 ms'
>>> describe_anomaly({"service": "cart", "scope": "edge", "series": "cart->db",
...                   "feature": "p50", "observed": 45.0, "lo": 20.0, "hi": 60.0,
...                   "expected": 30.0})  # a run of slow windows, each inside the band
'cart -> db p50 latency 45 ms, normal about 30 ms'
>>> describe_value("error_rate", 0.1234), describe_value("rate_per_s", 0.5)
('12%', '0.5/s')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

LATENCY_FIELDS = frozenset({"p50", "p95", "p99", "duration", "duration_ms", "latency"})
FEATURE_WORDS = {"p50": "p50 latency", "p95": "p95 latency", "p99": "p99 latency",
                 "error_rate": "error rate", "rate_per_s": "request rate",
                 "count": "events", "error_count": "errors", "duration": "call latency",
                 "errors": "call errors", "vector": "behaviour"}
NON_NEGATIVE = LATENCY_FIELDS | {"error_rate", "rate_per_s", "count", "error_count", "errors"}
# metric-name suffix -> how its values are written (Prometheus naming conventions)
_SUFFIX_UNITS = (("_seconds", "s"), ("_ms", "ms"), ("_milliseconds", "ms"), ("_bytes", "B"),
                 ("_ratio", "ratio"), ("_percent", "%"), ("_pct", "%"))


def sig2(x: float) -> str:
    """``x`` to two significant figures, without a trailing ``.0`` or exponent.

    >>> [sig2(v) for v in (0.0203334, 1.0, 183.7, 1234.0, 98765.0, -0.5)]
    ['0.02', '1', '180', '1200', '99000', '-0.5']
    """
    if x != x:
        return "?"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    digits = 1 - math.floor(math.log10(abs(x)))
    r = round(x, digits)
    text = f"{r:.{max(digits, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _scaled(x: float, steps: tuple[tuple[float, str], ...]) -> tuple[float, str]:
    for factor, unit in steps:
        if abs(x) >= factor:
            return x / factor, unit
    return x / steps[-1][0], steps[-1][1]


def _unit_of(field: str, name: str = "") -> str:
    if field in LATENCY_FIELDS:
        return "ms"
    if field == "error_rate":
        return "fraction"
    if field == "rate_per_s":
        return "/s"
    for suffix, unit in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    return ""


def describe_value(field: str, x: float, name: str = "") -> str:
    """One value with its unit, two significant figures (``1.2 s``, ``12%``, ``340/s``)."""
    unit = _unit_of(field, name)
    if x != x:
        return "?"
    if unit == "ms":
        v, u = _scaled(x, ((60_000.0, "min"), (1000.0, "s"), (1.0, "ms")))
        return f"{sig2(v)} {u}"
    if unit == "s":
        v, u = _scaled(x, ((60.0, "min"), (1.0, "s"), (0.001, "ms")))
        return f"{sig2(v)} {u}"
    if unit == "B":
        v, u = _scaled(x, ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B")))
        return f"{sig2(v)} {u}"
    if unit in ("fraction", "ratio"):
        return f"{sig2(x * 100)}%"
    if unit == "%":
        return f"{sig2(x)}%"
    if unit == "/s":
        return f"{sig2(x)}/s"
    return sig2(x)


def describe_range(field: str, lo: float, hi: float, name: str = "") -> str:
    """A normal range, the unit written once when both ends share it (``180-240 ms``)."""
    a, b = describe_value(field, lo, name), describe_value(field, hi, name)
    a_num, _, a_unit = a.partition(" ")
    b_num, _, b_unit = b.partition(" ")
    if a_unit and a_unit == b_unit:
        return f"{a_num}-{b_num} {b_unit}"
    if a.endswith("%") and b.endswith("%"):
        return f"{a[:-1]}-{b}"
    if a.endswith("/s") and b.endswith("/s"):
        return f"{a[:-2]}-{b}"
    return f"{a} to {b}"


def subject(a: Mapping[str, Any]) -> str:
    """Who and what: ``checkout POST /pay p95 latency``, ``catalog queue_depth``."""
    service, scope = str(a.get("service", "")), str(a.get("scope", "service"))
    feature, name = str(a.get("feature", "")), str(a.get("name", ""))
    what = FEATURE_WORDS.get(feature, feature)
    if scope == "metric":
        return f"{service} {name or feature}".strip()
    if scope == "route" and a.get("route"):
        return f"{service} {a['route']} {what}".strip()
    if scope == "edge":  # series "caller->callee" (an anomaly has no name field)
        callee = a.get("peer") or a.get("callee") or name or str(
            a.get("series", "")).partition("->")[2]
        return f"{service} -> {callee} {what}".strip()
    if scope == "instance":  # series "service@pod"
        return f"{service} pod {str(a.get('series', '')).partition('@')[2]} {what}".strip()
    return f"{service} {what}".strip()


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def describe_anomaly(a: Mapping[str, Any]) -> str:
    """An anomaly in words: subject, observed value, normal range (or expected value)."""
    return f"{subject(a)} {describe_reading(a)}"


def describe_reading(a: Mapping[str, Any]) -> str:
    """An anomaly's observed value and its normal range (or expected value), without the
    subject: ``1.2 s, normal 180-240 ms``."""
    field = str(a.get("feature", ""))
    name = str(a.get("name", "")) if a.get("scope") == "metric" else ""
    observed = _num(a.get("observed", a.get("value")))
    lo, hi, expected = _num(a.get("lo")), _num(a.get("hi")), _num(a.get("expected"))
    text = describe_value(field, observed, name)
    normal = "its siblings" if a.get("scope") == "instance" else "normal"
    if lo == lo and hi == hi and hi >= lo:
        if field in NON_NEGATIVE:  # a band below zero reads as nonsense: "-3 to 5 ms"
            lo = max(lo, 0.0)
        if lo <= observed <= hi and expected == expected:
            # inside its own band: decided by a run of windows or by slow calls, not by this
            # value alone; "45 ms, normal 30-60 ms" would contradict the page
            return f"{text}, {normal} about {describe_value(field, expected, name)}"
        if sig2(lo) == sig2(hi):
            return f"{text}, {normal} about {describe_value(field, hi, name)}"
        return f"{text}, {normal} {describe_range(field, lo, hi, name)}"
    if expected == expected:
        return f"{text}, {normal} about {describe_value(field, expected, name)}"
    return text


def describe_threshold(field: str, value: float, op: str, threshold: float,
                       name: str = "") -> str:
    """A threshold verdict in words: ``error rate 12% (> 5%)``."""
    what = FEATURE_WORDS.get(field, field)
    return (f"{what} {describe_value(field, value, name)} "
            f"({op} {describe_value(field, threshold, name)})")
