"""The realistic demo (``--profile realistic``): what a real fleet does that is not an incident.

The classic demo is a tidy world: three fixed hosts a service, service-level gauges with
Gaussian noise, a gentle daily cycle. Detectors tuned on it page on real fleets (issue 12).
This profile adds what generalises across fleets, each of them benign:

- **Pods that churn.** Each service runs 2-6 pods with generated names. A deploy (routine
  or not) replaces every pod by a new one; the autoscaler adds or removes pods as load
  moves (new names again); a pod now and then restarts in place (its counters reset).
- **Per-pod metrics**: ``cpu_percent``, ``memory_mb``, ``open_connections``, the small
  integer gauges ``queue_depth`` and ``inflight`` (0, 1, 2 ...), and the counter
  ``http_requests_total``, each with a ``pod`` label.
- **Load that moves together**: daily peaks (a compressed day in some families) and a
  marketing spike (every service's traffic x1.6-2.4 for a few minutes).
- **No-op changes**: deploys, config changes and flags that change nothing, more often.
- **A cache flush**: catalog misses its cache for a minute (more DB reads, a little
  slower), then recovers.

Incidents add ``network_delay`` (every call to one service slowed by 150-400 ms) and
``cpu_contention`` (one pod of a service starved: its CPU at 80-97 %, its service slower),
the two fault kinds of the Nezha/TrainTicket cases.

The evaluation runs it by **family** (``FAMILIES``): each family stresses one kind of
benign behaviour, so knobs chosen on the others are scored on a kind of fleet they never
saw (leave one family out).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from demo.fleet import FLEET, SERVICES, Service

# family -> knobs of the world: churn (autoscale and restart rates), spikes (marketing
# spikes an hour), day_s (length of a simulated day), small (mean of the small gauges),
# changes (no-op changes an hour), flushes (cache flushes an hour), rate (traffic factor)
FAMILIES: dict[str, dict[str, float]] = {
    "churn": {"churn": 3.0, "spikes": 1.0, "day_s": 86400, "small": 0.6, "changes": 30,
              "flushes": 1, "rate": 1.0},
    "spike": {"churn": 1.0, "spikes": 4.0, "day_s": 86400, "small": 0.6, "changes": 15,
              "flushes": 2, "rate": 1.0},
    "peaks": {"churn": 1.0, "spikes": 1.0, "day_s": 1200, "small": 0.6, "changes": 15,
              "flushes": 1, "rate": 1.0},
    "small": {"churn": 1.0, "spikes": 1.0, "day_s": 86400, "small": 1.5, "changes": 15,
              "flushes": 1, "rate": 0.5},
    "changes": {"churn": 1.5, "spikes": 1.0, "day_s": 7200, "small": 0.6, "changes": 60,
                "flushes": 3, "rate": 1.5},
}
FAULT_KINDS = ("network_delay", "cpu_contention")


def pod_name(service: str, generation: int, index: int, rng: random.Random) -> str:
    """A Kubernetes-like pod name: ``cart-5d9c7b8f4-x2k9q`` (new per generation)."""
    rs = hashlib.blake2b(f"{service}:{generation}".encode(), digest_size=5).hexdigest()[:9]
    tail = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
    return f"{service}-{rs}-{tail}"


@dataclass
class Pod:
    """One running pod: its name, counter, and starvation (cpu_contention)."""

    name: str
    requests: int = 0  # its http_requests_total
    memory: float = 0.0


@dataclass
class World:
    """The realistic fleet's benign state: pods, spikes, flushes (``FAMILIES`` knobs)."""

    rng: random.Random
    family: str
    knobs: dict[str, float]
    start_ms: int
    pods: dict[str, list[Pod]] = field(default_factory=dict)
    generation: dict[str, int] = field(default_factory=dict)
    spike: tuple[int, int, float] = (0, 0, 1.0)  # start, end ms, factor
    flush: tuple[int, int] = (0, 0)
    next_spike: int = 0
    next_flush: int = 0
    next_scale: int = 0

    @classmethod
    def create(cls, seed: int, family: str, start_ms: int) -> World:
        """The world of one run (its own random stream: the classic events keep theirs)."""
        if family not in FAMILIES:
            raise ValueError(f"unknown demo family {family!r}: one of {', '.join(FAMILIES)}")
        rng = random.Random(f"world:{seed}:{family}")
        w = cls(rng, family, FAMILIES[family], start_ms)
        for svc in FLEET:
            w.generation[svc.name] = 0
            w.pods[svc.name] = [w._pod(svc.name) for _ in range(w.target(svc, start_ms))]
        w.next_spike = start_ms + w._gap(w.knobs["spikes"])
        w.next_flush = start_ms + w._gap(w.knobs["flushes"])
        w.next_scale = start_ms + 30_000
        return w

    def _gap(self, per_hour: float) -> int:
        return int(self.rng.expovariate(per_hour / 3600) * 1000) + 120_000

    def _pod(self, service: str) -> Pod:
        return Pod(pod_name(service, self.generation[service], 0, self.rng),
                   memory=self.rng.uniform(-30, 30))

    # -- load ----------------------------------------------------------------------------

    def shape(self, t_ms: int) -> float:
        """Traffic multiplier: the (maybe compressed) daily cycle times any spike."""
        day = self.knobs["day_s"] * 1000
        phase = ((t_ms - self.start_ms) % day) / day if day < 86_400_000 else (
            (t_ms / 3_600_000) % 24 - 9) / 24
        base = 1.0 + 0.35 * math.sin(2 * math.pi * phase)
        return base * self.spike_factor(t_ms)

    def spike_factor(self, t_ms: int) -> float:
        """The marketing spike's factor (ramps up over 30 s, down over 60 s)."""
        s, e, f = self.spike
        if not s <= t_ms < e + 60_000:
            return 1.0
        if t_ms < s + 30_000:
            return 1.0 + (f - 1.0) * (t_ms - s) / 30_000
        if t_ms >= e:
            return 1.0 + (f - 1.0) * (1 - (t_ms - e) / 60_000)
        return f

    def rate(self) -> float:
        return self.knobs["rate"]

    def target(self, svc: Service, t_ms: int) -> int:
        """Pods the autoscaler wants for ``svc`` (about 1 per 4 % of the traffic)."""
        load = svc.weight / 4 * (self.shape(t_ms) if self.pods else 1.0)
        return max(2, min(8, math.ceil(load)))

    # -- what happens each second --------------------------------------------------------

    def second(self, t: int, change: Callable[[int, str, str, str, dict[str, Any]], str]
               ) -> None:
        """Start spikes and flushes, scale and restart pods; changes are announced."""
        rng = self.rng
        if t >= self.next_spike:
            length = rng.randint(180, 360) * 1000
            self.spike = (t, t + length, rng.uniform(1.6, 2.4))
            self.next_spike = t + length + self._gap(self.knobs["spikes"])
        if t >= self.next_flush:
            self.flush = (t, t + 60_000)
            change(t, "catalog", "config", "cache flush catalog products", {"cache": "products"})
            self.next_flush = t + self._gap(self.knobs["flushes"])
        if t >= self.next_scale:
            self.next_scale = t + int(30_000 / self.knobs["churn"])
            for svc in FLEET:
                pods, want = self.pods[svc.name], self.target(svc, t)
                if want != len(pods) and rng.random() < 0.5:
                    n = len(pods)
                    if want > n:
                        pods.append(self._pod(svc.name))
                    else:
                        pods.pop(rng.randrange(n))
                    change(t, svc.name, "scale", f"autoscaled {svc.name} from {n} to "
                           f"{len(pods)} replicas", {"from": n, "to": len(pods)})
            if rng.random() < 0.15 * self.knobs["churn"]:  # a pod restarts in place
                pod = rng.choice(self.pods[rng.choice(FLEET).name])
                pod.requests = 0

    def rollout(self, service: str) -> None:
        """A deploy: every pod replaced by one of the new generation."""
        self.generation[service] += 1
        self.pods[service] = [self._pod(service) for _ in self.pods[service]]

    def host(self, service: str) -> str:
        """The pod that serves a request now."""
        return self.rng.choice(self.pods[service]).name

    def count(self, service: str) -> None:
        """One request served by some pod of ``service``."""
        self.rng.choice(self.pods[service]).requests += 1

    def latency_factor(self, service: str, route: str, t_ms: int) -> float:
        """The cache flush: a third of catalog's product reads miss, twice as slow."""
        if service == "catalog" and route == "GET /products/{sku}" and (
                self.flush[0] <= t_ms < self.flush[1]) and self.rng.random() < 0.33:
            return 2.0
        return 1.0

    def metrics(self, t: int, incidents: list[Any],
                point: Callable[[str, str, float, str, str, dict[str, str]], None]) -> None:
        """Per-pod gauges and counters of every service that is up."""
        rng = self.rng
        shape = self.shape(t)
        starved = {i.effect.get("pod"): i for i in incidents if i.kind == "cpu_contention"}
        for svc in FLEET:
            pods = self.pods[svc.name]
            exhausted = any(i.kind == "resource_exhaustion" and i.service == svc.name
                            for i in incidents)
            down = any(i.kind == "dependency_outage" and i.service == svc.name
                       for i in incidents)
            if down:
                continue
            per_pod = svc.weight * shape / max(len(pods), 1)  # requests/s share of one pod
            for k, pod in enumerate(pods):
                labels = {"pod": pod.name}
                # the autoscaler keeps each pod near its target: CPU follows the load share
                load = svc.weight / 4 * shape / max(len(pods), 1)
                cpu = min(100.0, max(1.0, svc.cpu * (0.4 + 0.9 * min(load, 2.0))
                                     + rng.gauss(0, 2)))
                if exhausted:
                    cpu = rng.uniform(90, 99)
                if k == 0 and starved and starved.get(pod.name) is not None:
                    cpu = rng.uniform(80, 97)
                point(svc.name, "cpu_percent", cpu, "percent", "gauge", labels)
                pod.memory += rng.gauss(0, 1.5) - 0.01 * pod.memory
                point(svc.name, "memory_mb", 380 + 30 * svc.weight ** 0.5 + pod.memory,
                      "MB", "gauge", labels)
                conns = max(0.0, 2 + 2 * per_pod + rng.gauss(0, 1))
                point(svc.name, "open_connections", float(round(conns)), "1", "gauge", labels)
                small = self.knobs["small"] * shape
                point(svc.name, "queue_depth", float(_poisson(rng, small)), "1", "gauge", labels)
                point(svc.name, "inflight", float(_poisson(rng, 2 * small)), "1", "gauge", labels)
                point(svc.name, "http_requests_total", float(pod.requests), "1", "counter",
                      labels)

    def starve(self, service: str) -> str:
        """The pod a cpu_contention incident starves (the first of the service's)."""
        return self.pods[service][0].name


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


__all__ = ["FAMILIES", "FAULT_KINDS", "SERVICES", "World", "pod_name"]
