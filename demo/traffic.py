"""The demo timeline: seeded logs, metrics and changes of a fleet, with labelled incidents.

``generate(DemoConfig(...))`` yields ``(topic, event)`` pairs in event-time order for
``logwarden demo`` to publish or write out. Nothing here touches Kafka or the wall clock:
event time starts at ``start_ms`` and advances one simulated second per step, so a run is a
pure function of its config. The fleet (services, routes, call graph, templates) is in
``demo.fleet``; incidents and their ground truth in ``demo.incidents``.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from demo.fleet import (
    ADDRESSES,
    DEMO_TEMPLATES,
    FLEET,
    ROUTES,
    SERVICES,
    TEMPLATES,
    Route,
    Service,
    Slots,
    daily_shape,
    duration,
    rfc3339,
)
from demo.incidents import (
    KINDS,
    Incident,
    background_second,
    incident_second,
    metrics_tick,
    plan_incident,
)
from demo.realism import FAMILIES, FAULT_KINDS, World
from schemas.topics import CHANGES, LOGS

__all__ = ["DEMO_TEMPLATES", "Demo", "DemoConfig", "Incident", "event_time_ms", "generate",
           "parse_duration", "template_matches"]

Event = dict[str, Any]
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``10m``, ``1h30m`` or ``500ms``."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 90s, 10m or 1h30m")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def event_time_ms(event: Event) -> int:
    """The event time of a generated event (its ``ts`` is epoch ms or RFC 3339)."""
    ts = event["ts"]
    if isinstance(ts, int):
        return ts
    parsed = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def template_matches(pattern: str, template: str) -> bool:
    """Whether a mined ``template`` recovers a ``DEMO_TEMPLATES`` pattern (same or narrower).

    A run of variables may be mined as one (a miner that writes adjacent variables once).

    >>> template_matches("login failed for <*> from <*>", "login failed for <*> from <*>")
    True
    >>> template_matches("<*> <*> completed <*>", "GET <*> completed <*>")
    True
    >>> template_matches("call to <*> <*> ok", "call to <*> ok")
    True
    >>> template_matches("call to <*> ok", "call <*> <*> ok")
    False
    """
    runs = _VARIABLE_RUN.sub("<*>", " ".join(pattern.split()))
    rx = ".+".join(re.escape(part) for part in runs.split("<*>"))
    return re.fullmatch(rx, " ".join(template.split())) is not None


_VARIABLE_RUN = re.compile(r"<\*>(?:\s+<\*>)+")


@dataclass(frozen=True)
class DemoConfig:
    """What to generate: where event time starts, for how long, how busy, how many incidents."""

    start_ms: int
    seed: int = 0
    duration_s: float | None = None  # None: forever
    rate: float = 200.0  # base log events per second across the fleet
    incident_every_s: float = 180.0
    incidents: int | None = None  # spread N incidents evenly over duration_s instead
    profile: str = "classic"  # "realistic": pods that churn, spikes, small gauges (realism)
    family: str = "churn"  # the realistic world's family (``demo.realism.FAMILIES``)

    def __post_init__(self) -> None:
        if self.profile not in ("classic", "realistic"):
            raise ValueError(f"unknown demo profile {self.profile!r}: classic or realistic")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown demo family {self.family!r}: one of "
                             f"{', '.join(FAMILIES)}")

    def schedule(self) -> Iterator[tuple[int, int]]:
        """(start_ms, end_ms) of each incident, evenly spaced, on whole seconds."""
        if self.incidents is not None and self.duration_s is None:
            raise ValueError("a number of incidents needs a duration")
        if self.incidents is not None:
            spacing = self.duration_s / (self.incidents + 1) if self.duration_s else 0.0
        else:
            spacing = self.incident_every_s
        if spacing <= 0 or self.incidents == 0:
            return
        length = int(min(max(0.45 * spacing, 10.0), 300.0, 0.7 * spacing))
        k = 1
        while self.incidents is None or k <= self.incidents:
            start = self.start_ms + round(k * spacing) * 1000
            if self.duration_s is not None and (
                    start + length * 1000 > self.start_ms + self.duration_s * 1000):
                return
            yield start, start + length * 1000
            k += 1


def _poisson(rng: random.Random, lam: float) -> int:
    if lam >= 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class Demo:
    """The generator's state (clock, incidents, counters); ``events()`` drives it."""

    def __init__(self, cfg: DemoConfig,
                 on_incident: Callable[[Incident], None] = lambda i: None) -> None:
        self.cfg = cfg
        self.rng = rng = random.Random(cfg.seed)
        self.slots = Slots(rng)
        self.on_incident = on_incident
        self.incidents: list[Incident] = []
        self.active: list[Incident] = []
        self.tally: Counter[str] = Counter()  # per metrics interval: requests, orders, ...
        self.totals: Counter[str] = Counter()  # since start: the http_requests_total counters
        self.versions = {s.name: [rng.randint(1, 4), rng.randint(0, 30), 0] for s in FLEET}
        self._schedule = cfg.schedule()
        self._next_incident = next(self._schedule, None)
        self.world = (World.create(cfg.seed, cfg.family, cfg.start_ms)
                      if cfg.profile == "realistic" else None)
        self._kinds = list(KINDS) + (list(FAULT_KINDS) if self.world else [])
        rng.shuffle(self._kinds)
        self._out: list[tuple[float, int, str, Event]] = []
        self._seq = 0
        self._serving: tuple[str, str] | None = None  # the request's (service, pod) now
        self._last = float(cfg.start_ms)
        self._next_change = cfg.start_ms + 60_000 + int(rng.expovariate(1 / 240) * 1000)
        self._cum = list(itertools.accumulate(s.weight for s in FLEET))
        self._route_cum = {s.name: list(itertools.accumulate(r.weight for r in s.routes))
                           for s in FLEET}

    def events(self) -> Iterator[tuple[str, Event]]:
        """Every event, in event-time order, one simulated second at a time."""
        cfg, step = self.cfg, 0
        end = None if cfg.duration_s is None else cfg.start_ms + cfg.duration_s * 1000
        while end is None or cfg.start_ms + step * 1000 < end:
            self._second(cfg.start_ms + step * 1000, step)
            self._out.sort(key=lambda e: (e[0], e[1]))
            for _, _, topic, event in self._out:
                yield topic, event
            self._out.clear()
            step += 1

    def _second(self, t: int, step: int) -> None:
        self._last = t + 999.0  # events of this second stay in it, so the order holds
        while self._next_incident is not None and self._next_incident[0] <= t:
            kind = self._kinds[len(self.incidents) % len(self._kinds)]
            inc = plan_incident(self, kind, len(self.incidents) + 1, *self._next_incident)
            self.incidents.append(inc)
            self.on_incident(inc)
            self._next_incident = next(self._schedule, None)
        self.active = [i for i in self.incidents if i.active(t)]
        world = self.world
        if world is not None:
            world.second(t, self.change)
        if t >= self._next_change:
            self.benign_change(t)
            mean = 3600 / world.knobs["changes"] if world else 240
            self._next_change = t + int(max(60.0, self.rng.expovariate(1 / mean)) * 1000)
        rate = self.cfg.rate * (world.rate() if world else 1.0)
        budget, emitted = _poisson(self.rng, rate * self.shape(t)), 0
        while emitted < budget:
            svc = self.rng.choices(FLEET, cum_weights=self._cum)[0]
            if self.down(svc.name):
                emitted += 1  # a service that is down logs nothing
                continue
            route = self.rng.choices(svc.routes, cum_weights=self._route_cum[svc.name])[0]
            emitted += self._request(t, svc, route)
        for inc in self.active:
            incident_second(self, t, inc)
        background_second(self, t, step)
        if step % 10 == 0:
            metrics_tick(self, t)

    def shape(self, t: int) -> float:
        """The traffic multiplier at ``t`` (daily cycle; the realistic world's spikes)."""
        return self.world.shape(t) if self.world is not None else daily_shape(t)

    # -- emitting ---------------------------------------------------------------------

    def emit(self, topic: str, at: float, event: Event) -> None:
        """Queue one event of the current second (sorted by ``at`` before it is yielded)."""
        self._seq += 1
        self._out.append((min(at, self._last), self._seq, topic, event))

    def new_id(self) -> str:
        """A random (seeded) UUID4."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def log(self, svc: Service, at: float, level: str, template: str,
            ctx: dict[str, str], **fields: Any) -> None:
        """Emit one log line of ``template``; slots come from ``ctx``, else are drawn."""
        fmt, names = TEMPLATES[template]
        values = {n: ctx[n] if n in ctx else self.slots.draw(n) for n in names}
        at = min(at, self._last)
        ms, rng = int(at), self.rng
        event: Event = {
            "ts": ms if svc.epoch_ms else rfc3339(ms), "service": svc.name, "level": level,
            "message": fmt.format(**values),
            "host": self.pod(svc.name) if self.world else rng.choice(svc.hosts),
            "logger": svc.logger, "env": "prod", "trace_id": f"{rng.getrandbits(128):032x}",
            "span_id": f"{rng.getrandbits(64):016x}", "event_id": self.new_id(),
            "attrs": {"label": {"template": template}},  # ground truth
        }
        event.update(fields)
        self.emit(LOGS, at, event)

    def change(self, t: int, service: str, kind: str, description: str,
               attrs: dict[str, Any]) -> str:
        """Emit a change event; returns its event id."""
        event_id = self.new_id()
        self.emit(CHANGES, t, {"ts": rfc3339(t), "service": service, "kind": kind,
                               "description": description, "event_id": event_id,
                               "attrs": attrs})
        return event_id

    def deploy(self, t: int, service: str) -> str:
        """Deploy the next patch version of ``service``: a change and a startup line."""
        v = self.versions[service]
        previous = ".".join(map(str, v))
        v[2] += 1
        version, build = ".".join(map(str, v)), self.slots.hex(7)
        change_id = self.change(t, service, "deploy", f"deploy {service} {version}",
                                {"version": version, "previous_version": previous,
                                 "commit": build, "author": self.slots.draw("user")})
        self.log(SERVICES[service], t + 400, "INFO", "startup",
                 {"svc": service, "version": version, "build": build})
        if self.world is not None:
            self.world.rollout(service)  # every pod replaced
        return change_id

    def benign_change(self, t: int) -> None:
        """A routine deploy, config change, feature flag or scale event."""
        rng = self.rng
        svc = rng.choice(FLEET).name
        kind = rng.choices(("deploy", "config", "feature_flag", "scale"), (6, 2, 2, 1))[0]
        if kind == "deploy":
            self.deploy(t, svc)
        elif kind == "config":
            path = f"/etc/{svc}/config.yaml"
            self.change(t, svc, "config", f"config change {path}", {"file": path})
            self.log(SERVICES[svc], t + 300, "INFO", "config_reload",
                     {"file": path, "n": str(rng.randint(20, 90))})
        elif kind == "feature_flag":
            flag = rng.choice(("new_ranking", "fast_checkout", "dark_mode", "bulk_pricing"))
            pct = rng.choice((5, 10, 25, 50, 100))
            self.change(t, svc, "feature_flag", f"flag {flag} at {pct}%",
                        {"flag": flag, "percent": pct})
        else:
            n = rng.randint(2, 5)
            self.change(t, svc, "scale", f"scaled {svc} from {n} to {n + 1} replicas",
                        {"from": n, "to": n + 1})

    # -- requests ---------------------------------------------------------------------

    def effects(self, service: str, route: str) -> tuple[float, float, Incident | None]:
        """Extra 5xx probability, latency factor and the incident behind them."""
        err, lat, cause = 0.0, 1.0, None
        for inc in self.active:
            if inc.service == service and inc.route in (None, route) and inc.effect:
                err = max(err, float(inc.effect.get("error_rate", 0.0)))
                lat *= float(inc.effect.get("latency_factor", 1.0))
                if self._starved(service, inc):  # the requests of a starved pod
                    lat *= float(inc.effect.get("slow_factor", 1.0))
                cause = inc
        if self.world is not None:
            lat *= self.world.latency_factor(service, route, int(self._last))
        return err, lat, cause

    def pod(self, service: str) -> str:
        """The pod of the realistic world that serves ``service``'s request now: every line
        of one request comes from one pod; a call to another service lands on any of its."""
        assert self.world is not None
        serving = self._serving
        return serving[1] if serving and serving[0] == service else self.world.host(service)

    def _starved(self, service: str, inc: Incident) -> bool:
        """Whether a request of ``service`` is served by the pod ``inc`` starves (classic
        demo: a random ``slow_share`` of the requests)."""
        if self.world is None:
            share = float(inc.effect.get("slow_share", 0.0))
            return bool(share) and self.rng.random() < share
        return bool(inc.effect.get("pod")) and self.pod(service) == inc.effect["pod"]

    def delay(self, service: str) -> float:
        """Network delay (ms) on every call to ``service`` (a network_delay incident)."""
        return sum(float(i.effect.get("delay_ms", 0.0)) for i in self.active
                   if i.service == service)

    def down(self, service: str) -> bool:
        """Whether ``service`` is down (a dependency outage is on)."""
        return any(i.kind == "dependency_outage" and i.service == service for i in self.active)

    def latency(self, route: Route, factor: float = 1.0) -> float:
        """A response time: log-normal around the route's median, with a heavier tail."""
        rng = self.rng
        ms = route.p50_ms * math.exp(route.sigma * rng.gauss(0, 1))
        if rng.random() < 0.01:  # GC pauses, retries, cold caches
            ms *= 1 + rng.paretovariate(1.5)
        return min(ms * factor, 60_000.0)

    def _call(self, svc: Service, callee: str, op: str, at: float) -> tuple[float, bool, bool]:
        """One outbound call and its log line: (duration, ok, connection refused)."""
        rng = self.rng
        method, path = op.split(" ", 1)
        ctx = {"peer": callee, "method": method, "path": self.slots.fill_path(path)[0]}
        if self.down(callee):
            dur = sum(rng.uniform(0.5, 3.0) for _ in range(3))
            peer = {"service": callee, "operation": op, "duration_ms": round(dur, 3), "ok": False}
            self.log(svc, at + dur, "ERROR", "peer_refused",
                     {**ctx, "addr": ADDRESSES[callee], "n": "3"}, peer=peer)
            if rng.random() < 0.05:
                self.log(svc, at + dur, "WARN", "circuit_open", {"peer": callee})
            return dur, False, True
        err, lat, _ = self.effects(callee, op)
        dur = self.latency(ROUTES[(callee, op)], lat) + self.delay(callee)
        ok = rng.random() >= SERVICES[callee].error_rate + err
        peer = {"service": callee, "operation": op, "duration_ms": round(dur, 3), "ok": ok}
        ctx["dur"] = duration(dur)
        if ok:
            self.log(svc, at + dur, "DEBUG", "peer_ok", ctx, peer=peer)
        else:
            self.log(svc, at + dur, "ERROR", "peer_failed", {**ctx, "status": "500"}, peer=peer)
        return dur, ok, False

    def _request(self, t: int, svc: Service, route: Route) -> int:
        """One request: outbound calls, app lines, the access line. Returns lines emitted."""
        rng, slots = self.rng, self.slots
        start, last = t + rng.random() * 900, t + 999.0
        path, ctx = slots.fill_path(route.path)
        ctx.update(method=route.method, path=path, ip=rng.choice(slots.client_ips))
        if self.world is not None:
            self._serving = (svc.name, self.world.host(svc.name))
        err, lat, cause = self.effects(svc.name, route.key)
        elapsed, lines, refused = self.latency(route, lat), 1, None
        for callee, op in route.calls:
            dur, ok, was_refused = self._call(svc, callee, op, min(start + elapsed, last))
            elapsed, lines = elapsed + dur, lines + 1
            if not ok:
                refused = was_refused
                break
        at = min(start + elapsed, last)
        if refused is not None:
            status = 503 if refused else 502
        else:
            r = rng.random()
            if r < svc.error_rate + err:
                status = rng.choice((500, 500, 500, 503, 504))
                if cause is not None and rng.random() < err / (err + svc.error_rate):
                    lines += cause_line(self, cause, svc, at, ctx)
                elif rng.random() < 0.7:
                    exc, handler, source = slots.exception()
                    self.log(svc, at, "ERROR", "exception", {
                        "exc": exc, "handler": handler,
                        "frame": f"{source}:{rng.randint(20, 400)}"})
                    lines += 1
            elif r < svc.error_rate + err + svc.client_error_rate:
                status = rng.choice((400, 401, 403, 404, 404, 404, 409, 429))
            else:
                status = 201 if route.method == "POST" else 200
        if svc.name == "auth" and route.path == "/login":
            status = 401 if status < 300 and rng.random() < 0.04 else status
            lines += self._login(svc, at, ctx, status)
        if status < 400:
            for template, level, p in route.lines:
                if rng.random() < p:
                    self.log(svc, at, level, template, ctx)
                    lines += 1
        self._access(svc, route, at, ctx, status, elapsed)
        self.tally[f"requests:{svc.name}"] += 1
        self.tally[f"ok:{svc.name}:{route.key}"] += status < 400
        self.totals[svc.name] += 1
        if self.world is not None:
            self.world.count(svc.name)
        self._serving = None
        return lines

    def _login(self, svc: Service, at: float, ctx: dict[str, str], status: int) -> int:
        user = self.rng.choice(self.slots.users)
        ok = status < 400
        self.tally["logins" if ok else "login_failures"] += 1
        self.log(svc, at, "INFO" if ok else "WARN", "login_ok" if ok else "login_failed",
                 {"user": user, "ip": ctx["ip"]},
                 user={"id": user, "ip": ctx["ip"], "action": "login",
                       "outcome": "success" if ok else "failure"})
        return 1

    def _access(self, svc: Service, route: Route, at: float, ctx: dict[str, str],
                status: int, elapsed: float) -> None:
        level = "ERROR" if status >= 500 else "WARN" if status == 429 else "INFO"
        dur = duration(elapsed)
        if svc.sql:
            failed = status >= 500
            self.log(svc, at, level, "query_failed" if failed else "query",
                     {"table": route.path, "dur": dur, "sqlstate": "57014"},
                     attrs={"label": {"template": "query_failed" if failed else "query"},
                            "statement": route.method, "table": route.path,
                            "duration_ms": round(elapsed, 3)})
            return
        thr = route.p50_ms * math.exp(2.33 * route.sigma)  # about the baseline p99
        if elapsed > thr:
            self.log(svc, at, "WARN", "slow_request", {**ctx, "dur": dur, "thr": duration(thr)})
        self.log(svc, at, level, "access", {**ctx, "status": str(status), "dur": dur},
                 http={"method": route.method, "route": route.path, "status": status,
                       "duration_ms": round(elapsed, 3)})


def cause_line(demo: Demo, cause: Incident, svc: Service, at: float,
               ctx: dict[str, str]) -> int:
    """The error line an incident writes for a request it broke; returns lines written."""
    line = cause.effect.get("error_line")
    if not isinstance(line, tuple):
        return 0
    template, extra = line
    demo.log(svc, at, "ERROR", template, {**ctx, **extra})
    return 1


def generate(cfg: DemoConfig, on_incident: Callable[[Incident], None] = lambda i: None
             ) -> Iterator[tuple[str, Event]]:
    """Every event of the demo timeline as ``(topic, event)``, in event-time order."""
    return Demo(cfg, on_incident).events()
