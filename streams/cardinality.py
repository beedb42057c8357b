"""Caps on the series a producer can create: services, routes, metric series, instances.

Every distinct service, route and metric series costs an accumulator per window size here,
a detector model downstream and rows in the ``windows`` table. A producer that puts a user
id in a route or a request id in a label would create them without bound. Past a cap, a
new name folds into the ``other`` bucket of its service (its events still count, in one
series), the fold is counted by kind, and a sample of the folded input is dead-lettered so
an operator sees which producer does it. Names admitted before the cap keep their series;
the raw rows (``logs``, ``metric_points``) keep the original names.

>>> caps = CardinalityCaps(max_services=2, max_routes_per_service=1, max_routes=10,
...                        max_series_per_service=5, max_series=10)
>>> caps.service("a"), caps.service("b"), caps.service("c"), caps.service("a")
('a', 'b', 'other', 'a')
>>> caps.route("a", "GET /x"), caps.route("a", "GET /y"), caps.route("a", "GET /x")
('GET /x', 'other', 'GET /x')
>>> caps.folded["service"], caps.folded["route"]
(1, 1)
"""

from __future__ import annotations

from collections import Counter

OTHER = "other"
INSTANCE_IDLE_MS = 600_000  # an instance silent this long (event time) gives up its place
SAMPLE_EVERY = 1000  # after the first fold of a (kind, service), one dead letter per this many


class CardinalityCaps:
    """Admits names up to per-service and total caps; folds the rest into ``OTHER``."""

    def __init__(self, *, max_services: int = 10_000, max_routes_per_service: int = 500,
                 max_routes: int = 50_000, max_series_per_service: int = 2_000,
                 max_series: int = 200_000, max_instances_per_service: int = 64) -> None:
        self.max_services = max_services
        self.max_routes_per_service, self.max_routes = max_routes_per_service, max_routes
        self.max_series_per_service, self.max_series = max_series_per_service, max_series
        self._services: set[str] = set()
        self._routes: dict[str, set[str]] = {}
        self._series: dict[str, set[str]] = {}
        self.max_instances_per_service = max_instances_per_service
        self._instances: dict[str, dict[str, int]] = {}  # service -> instance -> last ts
        self._routes_total = 0
        self._series_total = 0
        self.folded: Counter[str] = Counter()  # folds by kind: service, route, series
        self._folds_of: Counter[tuple[str, str]] = Counter()  # by (kind, service), sampling
        self.sample: str | None = None  # set when the last fold should be dead-lettered

    def _fold(self, kind: str, service: str, name: str, cap: str) -> str:
        self.folded[kind] += 1
        n = self._folds_of[kind, service]
        if n < 1_000_000:  # bounded: services are capped, and the count stops here
            self._folds_of[kind, service] = n + 1
        if n % SAMPLE_EVERY == 0:
            self.sample = (f"{kind} {name[:200]!r} of service {service!r} folded into "
                           f"{OTHER!r}: {cap}")
        return OTHER

    def service(self, service: str) -> str:
        """``service``, or ``OTHER`` once ``max_services`` others were admitted."""
        known = self._services
        if service in known:
            return service
        if len(known) >= self.max_services:
            return self._fold("service", service, service,
                              f"{self.max_services} services (stream.max_services)")
        known.add(service)
        return service

    def route(self, service: str, route: str) -> str:
        """``route`` of an admitted service, or ``OTHER`` past a route cap."""
        routes = self._routes.get(service)
        if routes is not None and route in routes:
            return route
        if routes is None:
            routes = self._routes[service] = set()
        if len(routes) >= self.max_routes_per_service:
            return self._fold("route", service, route, f"{self.max_routes_per_service} routes "
                              "for the service (stream.max_routes_per_service)")
        if self._routes_total >= self.max_routes:
            return self._fold("route", service, route,
                              f"{self.max_routes} routes in total (stream.max_routes)")
        routes.add(route)
        self._routes_total += 1
        return route

    def series(self, service: str, series: str) -> str:
        """A metric ``series`` of an admitted service, or ``<service>/other`` past a cap."""
        known = self._series.get(service)
        if known is not None and series in known:
            return series
        if known is None:
            known = self._series[service] = set()
        cap = ""
        if len(known) >= self.max_series_per_service:
            cap = (f"{self.max_series_per_service} metric series for the service "
                   "(stream.max_series_per_service)")
        elif self._series_total >= self.max_series:
            cap = f"{self.max_series} metric series in total (stream.max_series)"
        if cap:
            self._fold("series", service, series, cap)
            return f"{service}/{OTHER}"
        known.add(series)
        self._series_total += 1
        return series

    def instance(self, service: str, instance: str, ts_ms: int) -> bool:
        """Whether a request served by ``instance`` (a pod, a host) of an admitted service is
        counted in that instance's latency series. Pods come and go with every deploy, so
        only recent ones are held: at ``max_instances_per_service``, those silent for
        ``INSTANCE_IDLE_MS`` of event time make room; if none is, the request is not
        counted per instance (the service's own series still counts it).

        >>> caps = CardinalityCaps(max_instances_per_service=2)
        >>> [caps.instance("a", p, 0) for p in ("x", "y", "z")]
        [True, True, False]
        >>> caps.instance("a", "z", INSTANCE_IDLE_MS)  # x and y were silent long enough
        True
        """
        seen = self._instances.get(service)
        if seen is None:
            seen = self._instances[service] = {}
        last = seen.get(instance)
        if last is not None or len(seen) < self.max_instances_per_service:
            if last is None or last < ts_ms:
                seen[instance] = ts_ms
            return True
        for name in [k for k, t in seen.items() if t <= ts_ms - INSTANCE_IDLE_MS]:
            del seen[name]
        if len(seen) >= self.max_instances_per_service:
            self.folded["instance"] += 1
            return False
        seen[instance] = ts_ms
        return True

    def take_sample(self) -> str | None:
        """The reason of the last fold to dead-letter, once (None when there is none)."""
        sample, self.sample = self.sample, None
        return sample
