"""Injected incidents of the demo fleet, their ground truth, and the fleet's metrics.

Each incident kind changes what the generator writes while it lasts (more 5xx on a route,
slower responses after a deploy, a service down, a full disk, an exhausted pool, a
brute-force attack) and says, in ``signals``, what a monitor should see.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from demo.fleet import (
    CALLERS,
    DEMO_TEMPLATES,
    FLEET,
    SERVICES,
    Service,
    Slots,
    rfc3339,
)
from schemas.topics import METRICS

KINDS = ("error_burst", "latency_regression", "dependency_outage", "disk_full",
         "resource_exhaustion", "brute_force")
_LABELS = {"env": "prod", "region": "eu-west-1"}
_POOL_MAX = 200


class Demo(Protocol):
    """What an incident uses of the generator (``demo.traffic.Demo``)."""

    rng: random.Random
    slots: Slots
    active: list[Incident]
    tally: Counter[str]
    totals: Counter[str]

    def log(self, svc: Service, at: float, level: str, template: str,
            ctx: dict[str, str], **fields: Any) -> None: ...
    def change(self, t: int, service: str, kind: str, description: str,
               attrs: dict[str, Any]) -> str: ...
    def deploy(self, t: int, service: str) -> str: ...
    def emit(self, topic: str, at: float, event: dict[str, Any]) -> None: ...
    def effects(self, service: str, route: str) -> tuple[float, float, Incident | None]: ...
    def down(self, service: str) -> bool: ...
    def shape(self, t: int) -> float: ...

    world: Any  # the realistic profile's ``demo.realism.World`` (None: classic)


@dataclass
class Incident:
    """One injected incident and its ground truth."""

    id: str
    kind: str
    service: str
    route: str | None  # None: the whole service
    start_ms: int
    end_ms: int
    severity: str  # critical / warning
    services: tuple[str, ...]  # every service that shows it
    signals: list[dict[str, Any]]  # what a monitor should see
    effect: dict[str, Any] = field(default_factory=dict)  # knobs the generator reads

    def active(self, t_ms: int) -> bool:
        """Whether event time ``t_ms`` lies inside the incident."""
        return self.start_ms <= t_ms < self.end_ms

    def label(self) -> dict[str, Any]:
        """The ground-truth record of the labels file."""
        return {"id": self.id, "kind": self.kind, "service": self.service,
                "services": list(self.services), "route": self.route,
                "start": rfc3339(self.start_ms), "end": rfc3339(self.end_ms),
                "start_ms": self.start_ms, "end_ms": self.end_ms,
                "severity": self.severity, "signals": self.signals}


def _template(name: str, level: str, service: str) -> dict[str, Any]:
    return {"type": "template", "template": DEMO_TEMPLATES[name], "name": name,
            "level": level, "service": service}


def _callers(service: str, route: str | None = None) -> list[str]:
    return sorted({c for c, _, op in CALLERS.get(service, []) if route in (None, op)})


def plan_incident(demo: Demo, kind: str, number: int, start: int, end: int) -> Incident:
    """Draw the details of incident ``number`` of ``kind`` and write its opening change."""
    rng = demo.rng
    iid = f"inc-{number:03d}-{kind.replace('_', '-')}"

    def busy_route(service: str) -> str:
        routes = [r for r in SERVICES[service].routes if r.weight >= 1]
        return rng.choices(routes, weights=[r.weight for r in routes])[0].key

    if kind == "error_burst":
        svc = rng.choice(("cart", "catalog", "search", "users", "inventory"))
        route, rate = busy_route(svc), round(rng.uniform(0.25, 0.45), 3)
        exc, handler, source = demo.slots.exception()
        flag = rng.choice(("new_ranking", "fast_checkout", "bulk_pricing"))
        change = demo.change(start, svc, "feature_flag", f"flag {flag} at 50%",
                             {"flag": flag, "percent": 50})
        line = ("exception", {"exc": exc, "handler": handler,
                              "frame": f"{source}:{rng.randint(20, 400)}"})
        callers = _callers(svc, route)
        return Incident(iid, kind, svc, route, start, end, "critical", (svc, *callers), [
            {"type": "error_rate", "service": svc, "route": route,
             "baseline": SERVICES[svc].error_rate, "expected": rate},
            _template("exception", "ERROR", svc),
            {"type": "change", "kind": "feature_flag", "service": svc, "event_id": change},
            {"type": "error_rate", "services": callers, "note": "propagates to callers"},
        ], {"error_rate": rate, "error_line": line})
    if kind == "latency_regression":
        svc = rng.choice(("search", "catalog", "users", "inventory", "cart"))
        route, factor = busy_route(svc), round(rng.uniform(3.0, 5.0), 2)
        change = demo.deploy(start, svc)
        callers = _callers(svc, route)  # their calls to it slow down as much
        return Incident(iid, kind, svc, route, start, end, "warning", (svc, *callers), [
            {"type": "latency_p95", "service": svc, "route": route, "factor": factor},
            _template("slow_request", "WARN", svc),
            {"type": "change", "kind": "deploy", "service": svc, "event_id": change},
        ], {"latency_factor": factor})
    if kind == "dependency_outage":
        svc = rng.choice(("payments", "inventory"))
        callers = _callers(svc)
        return Incident(iid, kind, svc, None, start, end, "critical", (svc, *callers), [
            {"type": "peer_failures", "services": callers, "peer": svc, "ok": False},
            {"type": "error_rate", "services": callers, "status": 503},
            *(_template("peer_refused", "ERROR", c) for c in callers),
            _template("crash", "CRITICAL", svc),
            {"type": "metric", "service": svc, "name": "up", "expected": 0},
            {"type": "silence", "service": svc, "note": "no access logs while down"},
            {"type": "metric", "service": "checkout", "name": "orders_per_min",
             "expected": "drop"},
        ])
    if kind == "disk_full":
        svc = rng.choice(("postgres-proxy", "notifications"))
        return Incident(iid, kind, svc, None, start, end, "critical", (svc, *_callers(svc)), [
            {"type": "metric", "service": svc, "name": "disk_used_percent", "expected_min": 98},
            _template("disk_full", "ERROR", svc),
            {"type": "error_rate", "service": svc, "expected": 0.15},
        ], {"error_rate": 0.15,
            "error_line": ("disk_full", {"file": f"/var/lib/{svc}/data/seg-0042.log"})})
    if kind == "resource_exhaustion":
        svc, factor = "postgres-proxy", round(rng.uniform(4.0, 8.0), 2)
        callers = _callers(svc)
        return Incident(iid, kind, svc, None, start, end, "warning", (svc, *callers), [
            {"type": "metric", "service": svc, "name": "open_connections",
             "expected": _POOL_MAX},
            _template("pool_exhausted", "ERROR", svc),
            _template("pool_timeout", "ERROR", svc),
            {"type": "latency_p95", "service": svc, "route": None, "factor": factor},
            {"type": "peer_latency", "services": callers, "peer": svc},
        ], {"latency_factor": factor, "error_rate": 0.05,
            "error_line": ("pool_timeout", {"dur": "5000.0ms"})})
    if kind == "brute_force":
        ip = f"185.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        victims = rng.sample(demo.slots.users, rng.randint(3, 6))
        per_s = round(rng.uniform(8.0, 20.0), 1)
        return Incident(iid, kind, "auth", "POST /login", start, end, "warning", ("auth",), [
            {"type": "security", "service": "auth", "ip": ip, "action": "login",
             "outcome": "failure", "per_second": per_s, "users": victims},
            _template("login_failed", "WARN", "auth"),
            _template("account_locked", "WARN", "auth"),
            {"type": "metric", "service": "auth", "name": "login_failures_per_min",
             "expected": "spike"},
        ], {"ip": ip, "victims": victims, "per_second": per_s})
    if kind == "network_delay":  # every call to it waits on the network; its own
        svc = rng.choice(("inventory", "users", "payments", "catalog", "search", "cart"))
        callers, delay = _callers(svc), round(rng.uniform(150, 400))  # logs see nothing
        return Incident(iid, kind, svc, None, start, end, "critical", (svc, *callers), [
            {"type": "peer_latency", "services": callers, "peer": svc, "delay_ms": delay},
            {"type": "latency_p95", "services": callers, "note": "callers slow down"},
        ], {"delay_ms": delay})
    if kind == "cpu_contention":  # one pod starved of CPU: slow, and unlike its siblings
        svc = rng.choice(("catalog", "search", "cart", "users", "inventory", "web-gateway"))
        world = demo.world
        pod = world.starve(svc) if world is not None else ""
        share = 1 / max(len(world.pods[svc]), 1) if world is not None else 0.33
        return Incident(iid, kind, svc, None, start, end, "critical", (svc, *_callers(svc)), [
            {"type": "metric", "service": svc, "name": "cpu_percent", "instance": pod,
             "expected_min": 80},
            {"type": "latency_p95", "service": svc, "route": None, "factor": 3.0},
        ], {"pod": pod, "slow_share": share, "slow_factor": 4.0})
    raise ValueError(f"unknown incident kind {kind!r}")


def incident_second(demo: Demo, t: int, inc: Incident) -> None:
    """The lines an incident writes by itself during one second (beyond broken requests)."""
    rng, svc = demo.rng, SERVICES[inc.service]
    if inc.kind == "brute_force":
        ip, victims = inc.effect["ip"], inc.effect["victims"]
        auth, login = SERVICES["auth"], "/login"
        for _ in range(max(1, round(rng.gauss(inc.effect["per_second"], 2)))):
            at, user = t + rng.random() * 999, rng.choice(victims)
            demo.tally["login_failures"] += 1
            security = {"id": user, "ip": ip, "action": "login", "outcome": "failure"}
            demo.log(auth, at, "WARN", "login_failed", {"user": user, "ip": ip}, user=security)
            demo.log(auth, at, "INFO", "access", {
                "method": "POST", "path": login, "status": "401",
                "dur": f"{rng.uniform(30, 60):.1f}ms", "ip": ip},
                http={"method": "POST", "route": login, "status": 401, "duration_ms": 40.0})
            key = f"locked:{inc.id}:{user}"
            demo.tally[key] += 1
            if demo.tally[key] == 5:
                demo.log(auth, at, "WARN", "account_locked", {"user": user, "n": "5", "ip": ip},
                         user={**security, "action": "lockout"})
    elif inc.kind == "dependency_outage" and (t - inc.start_ms) % 10_000 == 0:
        demo.log(svc, t + 5, "CRITICAL", "crash", {"code": "137", "dur": "10.0s"})
    elif inc.kind == "disk_full":
        for _ in range(rng.randint(1, 3)):
            demo.log(svc, t + rng.random() * 999, "ERROR", "disk_full",
                     {"file": f"/var/lib/{svc.name}/data/seg-{rng.randint(1000, 9999)}.log"})
        if (t - inc.start_ms) % 10_000 == 0:
            demo.log(svc, t + 1, "WARN", "disk_usage", {"mount": f"/var/lib/{svc.name}",
                                                        "pct": f"{rng.randint(98, 100)}%"})
    elif inc.kind == "resource_exhaustion":
        for _ in range(rng.randint(1, 3)):
            demo.log(svc, t + rng.random() * 999, "ERROR", "pool_exhausted",
                     {"waiting": str(rng.randint(20, 150)), "max": str(_POOL_MAX)})


def background_second(demo: Demo, t: int, step: int) -> None:
    """Routine lines not tied to requests: health checks, pool stats, GC pauses, slow queries."""
    rng = demo.rng
    for i, svc in enumerate(FLEET):
        if demo.down(svc.name):
            continue
        if (step + i) % 10 == 0:
            demo.log(svc, t + i, "DEBUG", "health", {"n": str(4 + i % 5)})
        if svc.name in ("catalog", "search", "payments") and rng.random() < 0.03:
            demo.log(svc, t + rng.random() * 999, "INFO", "gc_pause", {})
    db = SERVICES["postgres-proxy"]
    exhausted = any(i.kind == "resource_exhaustion" for i in demo.active)
    if step % 5 == 0:
        ctx = ({"active": str(_POOL_MAX), "idle": "0", "waiting": str(rng.randint(20, 150))}
               if exhausted else {})
        demo.log(db, t + 50, "INFO", "pool_stats", ctx)
    if rng.random() < (0.5 if exhausted else 0.05):
        demo.log(db, t + rng.random() * 999, "WARN", "slow_query", {})


def metrics_tick(demo: Demo, t: int) -> None:
    """Every service's gauges and counters for the last 10 s (daily shape, incidents)."""
    rng, tally = demo.rng, demo.tally
    shape = demo.shape(t)
    kinds = {(i.service, i.kind) for i in demo.active}

    def point(service: str, name: str, value: float, unit: str, kind: str = "gauge") -> None:
        demo.emit(METRICS, t, {"ts": t, "service": service, "name": name,
                               "value": round(value, 3), "kind": kind, "unit": unit,
                               "labels": _LABELS})

    world = demo.world
    if world is not None:  # per-pod gauges and counters instead of per-service ones
        world.metrics(t, demo.active, lambda service, name, value, unit, kind, labels: demo.emit(
            METRICS, t, {"ts": t, "service": service, "name": name, "value": round(value, 3),
                         "kind": kind, "unit": unit, "labels": {**_LABELS, **labels}}))
    for svc in FLEET:
        name = svc.name
        point(name, "up", 0.0 if demo.down(name) else 1.0, "bool")
        if demo.down(name):
            continue
        point(name, "requests_per_s", tally[f"requests:{name}"] / 10, "1/s")
        if world is not None:
            disk = 40 + 2.5 * svc.weight + (t / 3_600_000) % 1 + rng.gauss(0, 0.1)
            if (name, "disk_full") in kinds:
                disk = rng.uniform(98.5, 100.0)
            point(name, "disk_used_percent", min(100.0, disk), "percent")
            continue
        point(name, "http_requests_total", demo.totals[name], "1", "counter")
        lat = max((demo.effects(name, r.key)[1] for r in svc.routes), default=1.0)
        cpu = svc.cpu * shape * (1 + 0.15 * (lat - 1)) + rng.gauss(0, 2)
        if (name, "resource_exhaustion") in kinds:
            cpu = rng.uniform(90, 99)
        point(name, "cpu_percent", min(100.0, max(1.0, cpu)), "percent")
        point(name, "memory_mb", 400 + 40 * svc.weight + rng.gauss(0, 8), "MB")
        conns = svc.weight * 3 * shape + rng.gauss(0, 2)
        if (name, "resource_exhaustion") in kinds:
            conns = _POOL_MAX
        point(name, "open_connections", max(0.0, conns), "1")
        disk = 40 + 2.5 * svc.weight + (t / 3_600_000) % 1 + rng.gauss(0, 0.1)
        if (name, "disk_full") in kinds:
            disk = rng.uniform(98.5, 100.0)
        point(name, "disk_used_percent", min(100.0, disk), "percent")
    business = {
        ("checkout", "orders_per_min"): tally["ok:checkout:POST /checkout"] * 6,
        ("payments", "payments_per_min"): tally["ok:payments:POST /charges"] * 6,
        ("auth", "logins_per_min"): tally["logins"] * 6,
        ("auth", "login_failures_per_min"): tally["login_failures"] * 6,
        ("notifications", "queue_depth"): max(0.0, 20 * shape + rng.gauss(0, 4)),
    }
    for (service, name), value in business.items():
        if not demo.down(service):
            point(service, name, value, "1/min" if name.endswith("per_min") else "1")
    locked = {k: v for k, v in tally.items() if k.startswith("locked:")}
    tally.clear()
    tally.update(locked)
