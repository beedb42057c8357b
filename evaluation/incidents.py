"""Score anomalies against labelled incidents: detected?, time to detect, false alarms.

An anomaly belongs to an incident when its service is one the incident shows on and its
window ends in ``(start, end + slack]``; every other anomaly is a false alarm. Figures
are per variant, so a champion and its challenger are compared on the same labels.

>>> labels = [{"id": "i1", "kind": "error_burst", "severity": "critical", "service": "a",
...            "services": ["a", "b"], "start_ms": 100_000, "end_ms": 200_000}]
>>> anomalies = [{"ts": 120_000, "service": "b", "variant": "champion", "id": "x"},
...              {"ts": 900_000, "service": "a", "variant": "champion", "id": "y"}]
>>> r = evaluate(anomalies, labels, hours=1.0)["champion"]
>>> r["incidents"][0]["ttd_s"], r["false_alarms"], r["false_fraction"]
(20.0, 1, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SLACK_MS = 120_000  # an anomaly this long after the incident's end still belongs to it


def match(anomaly: Mapping[str, Any], labels: Sequence[Mapping[str, Any]],
          slack_ms: int = SLACK_MS) -> Mapping[str, Any] | None:
    """The incident an anomaly belongs to, or None (a false alarm).

    An incident in progress wins over one that ended less than ``slack_ms`` ago.
    """
    ts = int(anomaly["ts"])
    late = None
    for inc in labels:
        services = set(inc.get("services") or [inc["service"]])
        if anomaly["service"] not in services or not inc["start_ms"] < ts:
            continue
        if ts <= inc["end_ms"]:
            return inc
        if late is None and ts <= inc["end_ms"] + slack_ms:
            late = inc
    return late


def evaluate(anomalies: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]],
             hours: float, feedback: Mapping[str, str] | None = None,
             slack_ms: int = SLACK_MS) -> dict[str, dict[str, Any]]:
    """Per variant: each incident's detection and delay, false alarms, precision, recall."""
    variants = sorted({str(a.get("variant", "champion")) for a in anomalies} | {"champion"})
    out: dict[str, dict[str, Any]] = {}
    for variant in variants:
        mine = sorted((a for a in anomalies if a.get("variant", "champion") == variant),
                      key=lambda a: int(a["ts"]))
        first: dict[str, int] = {}
        false = 0
        for a in mine:
            inc = match(a, labels, slack_ms)
            if inc is None:
                false += 1
            else:
                first.setdefault(str(inc["id"]), int(a["ts"]))
        incidents = []
        for inc in labels:
            at = first.get(str(inc["id"]))
            incidents.append({"id": inc["id"], "kind": inc.get("kind", ""),
                              "severity": inc.get("severity", ""),
                              "service": inc.get("service", ""), "detected": at is not None,
                              "ttd_s": None if at is None else (at - inc["start_ms"]) / 1000})
        out[variant] = {"anomalies": len(mine), "false_alarms": false,
                        "false_per_hour": round(false / hours, 2) if hours > 0 else 0.0,
                        "false_fraction": round(false / len(mine), 4) if mine else 0.0,
                        "incidents": incidents, **summary(incidents),
                        **feedback_figures(mine, feedback or {})}
    return out


def summary(incidents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Recall overall and on critical incidents, mean and max time to detect."""
    crit = [i for i in incidents if i["severity"] == "critical"]
    ttd = [float(i["ttd_s"]) for i in incidents if i["detected"]]
    return {"recall": round(sum(i["detected"] for i in incidents) / len(incidents), 3)
            if incidents else 1.0,
            "critical_recall": round(sum(i["detected"] for i in crit) / len(crit), 3)
            if crit else 1.0,
            "critical_within_60s": sum(1 for i in crit if i["detected"]
                                       and float(i["ttd_s"]) <= 60),
            "criticals": len(crit),
            "ttd_mean_s": round(sum(ttd) / len(ttd), 1) if ttd else None,
            "ttd_max_s": max(ttd) if ttd else None}


def feedback_figures(anomalies: Sequence[Mapping[str, Any]], verdicts: Mapping[str, str]
                     ) -> dict[str, Any]:
    """Precision and false-alert rate from people's verdicts on these anomalies."""
    got = [verdicts[str(a["id"])] for a in anomalies if str(a.get("id")) in verdicts]
    tp, fp = got.count("true"), got.count("false")
    if tp + fp == 0:
        return {"judged": len(got)}
    return {"judged": len(got), "feedback_precision": round(tp / (tp + fp), 4),
            "feedback_false_alert_rate": round(fp / (tp + fp), 4)}


def alert_figures(alerts: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]],
                  slack_ms: int = SLACK_MS) -> dict[str, Any]:
    """What reached people: alert episodes (``ts``: the event time that fired them, ms;
    ``service``, ``severity``) matched to incidents as anomalies are. False ones, and per
    critical incident whether a critical alert fired within 60 s of its start.

    >>> labels = [{"id": "i1", "severity": "critical", "service": "a", "start_ms": 100_000,
    ...            "end_ms": 200_000}]
    >>> got = alert_figures([{"ts": 130_000, "service": "a", "severity": "critical"},
    ...                      {"ts": 150_000, "service": "b", "severity": "warning"}], labels)
    >>> got["false_alerts"], got["critical_alerted_within_60s"], got["first_critical_alert_s"]
    (1, 1, {'i1': 30.0})
    """
    false = 0
    first: dict[str, float] = {}
    for a in alerts:
        inc = match(a, labels, slack_ms)
        false += inc is None
        if inc is not None and a.get("severity") == "critical":
            at = (int(a["ts"]) - int(inc["start_ms"])) / 1000
            first[str(inc["id"])] = min(first.get(str(inc["id"]), at), at)
    crit = [str(i["id"]) for i in labels if i.get("severity") == "critical"]
    return {"alerts": len(alerts), "false_alerts": false,
            "false_alert_fraction": round(false / len(alerts), 4) if alerts else 0.0,
            "critical_alerted_within_60s": sum(1 for i in crit if first.get(i, 61.0) <= 60),
            "criticals": len(crit), "first_critical_alert_s": first}
