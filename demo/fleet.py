"""The demo fleet: services, routes, call graph, log templates and their variables.

Every log line ``logwarden demo`` writes comes from one of ``TEMPLATES``; each ``{slot}`` is
one whitespace-free token drawn by ``Slots`` (ids, IPs, durations, user names, paths ...).
``DEMO_TEMPLATES`` lists the patterns with slots as ``<*>``: what template mining should
recover from the stream.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_RAW_TEMPLATES = {
    # requests and calls
    "access": "{method} {path} completed {status} in {dur} client={ip}",
    "query": "query {qid} on {table} returned {rows} rows in {dur}",
    "query_failed": "query {qid} on {table} failed with sqlstate {sqlstate}",
    "peer_ok": "call to {peer} {method} {path} succeeded in {dur}",
    "peer_failed": "call to {peer} {method} {path} failed with status {status} in {dur}",
    "peer_refused": "call to {peer} {method} {path} failed: connection refused {addr} after "
                    "{n} attempts",
    "circuit_open": "circuit breaker open for {peer} after {n} consecutive failures",
    "exception": "unhandled {exc} in {handler} at {frame}",
    "slow_request": "slow request {method} {path} took {dur} threshold {thr}",
    # application lines
    "login_ok": "login succeeded for user {user} from {ip}",
    "login_failed": "login failed for user {user} from {ip} invalid credentials",
    "account_locked": "locked account {user} after {n} failed attempts from {ip}",
    "token_issued": "issued session token {token} for user {user} ttl {ttl}",
    "profile_loaded": "loaded profile {user_id} from cache in {dur}",
    "cache_miss": "cache miss for product {sku} loaded from database in {dur}",
    "price_refresh": "refreshed price list with {n} items in {dur}",
    "cart_add": "added {qty} units of {sku} to cart {cart_id}",
    "order_placed": "order {order_id} placed by user {user} total {amount} USD",
    "charge_ok": "charge {charge_id} authorized amount {amount} card ending {last4}",
    "provider": "payment provider {provider} responded {status} in {dur}",
    "reserved": "reserved {qty} units of {sku} for order {order_id}",
    "low_stock": "stock for {sku} below threshold with {n} left",
    "search": 'search for "{query}" returned {n} hits in {dur}',
    "email_sent": "sent {tpl} email to {email} message_id={msg_id}",
    "sms_sent": "sent sms to {phone} via {provider} in {dur}",
    "pool_stats": "connection pool stats active={active} idle={idle} waiting={waiting}",
    "slow_query": "slow query {qid} on {table} took {dur} rows={rows}",
    "gc_pause": "gc pause {dur} heap {heap}",
    "health": "health check passed workers={n} uptime={uptime}",
    "startup": "starting {svc} version {version} build {build}",
    "config_reload": "reloaded configuration {file} with {n} keys",
    # incident lines
    "disk_full": "write to {file} failed: No space left on device",
    "disk_usage": "disk usage {pct} on {mount} above threshold {thr_pct}",
    "pool_exhausted": "connection pool exhausted with {waiting} clients waiting max={max}",
    "pool_timeout": "timed out acquiring connection for query {qid} after {dur}",
    "crash": "process exited with code {code} restarting in {dur}",
}

# name -> (format string, slot names)
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    name: (fmt, tuple(f for _, f, _, _ in string.Formatter().parse(fmt) if f))
    for name, fmt in _RAW_TEMPLATES.items()
}
DEMO_TEMPLATES: dict[str, str] = {
    name: "".join(lit + ("<*>" if f else "") for lit, f, _, _ in string.Formatter().parse(fmt))
    for name, fmt in _RAW_TEMPLATES.items()
}

_FIRST = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
          "mallory", "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "uma",
          "victor", "wendy", "xavier", "yara", "zoe")
_LAST = ("smith", "jones", "garcia", "chen", "kumar", "novak", "okafor", "silva", "tanaka",
         "muller", "rossi", "dubois")
_WORDS = ("shoes", "jacket", "headphones", "lamp", "backpack", "kettle", "monitor", "desk",
          "sofa", "camera", "watch", "umbrella", "blender", "tent", "bicycle", "mug")
_EXCEPTIONS = (("KeyError", "CartHandler.add_item", "cart/handlers.py"),
               ("TimeoutError", "CatalogView.get_product", "catalog/views.py"),
               ("AttributeError", "SearchService.rank", "search/ranking.py"),
               ("IntegrityError", "UserRepo.update", "users/repository.py"),
               ("ValueError", "StockService.reserve", "inventory/stock.py"))


class Slots:
    """Draws a realistic value for each template slot, from one seeded ``Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = r = rng
        self.users = [f"{f}.{ln}" for f in _FIRST for ln in _LAST]
        self.user_ids = {u: f"u-{r.randint(10000, 99999)}" for u in self.users}
        self.client_ips = [f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}."
                           f"{r.randint(1, 254)}" for _ in range(400)]
        self._draw: dict[str, Callable[[], str]] = {
            "method": lambda: r.choice(("GET", "POST")),
            "path": lambda: f"/api/items/{r.randint(1, 99999)}",
            "status": lambda: r.choice(("200", "201", "404")),
            "dur": lambda: duration(r.lognormvariate(3, 0.8)),
            "thr": lambda: duration(r.choice((250, 500, 1000))),
            "ip": lambda: r.choice(self.client_ips),
            "addr": lambda: f"10.0.{r.randint(0, 9)}.{r.randint(2, 250)}:{r.choice((8080, 8443))}",
            "qid": lambda: f"q{r.randint(100000, 999999)}",
            "table": lambda: r.choice(("orders", "users", "products", "stock", "charges")),
            "rows": lambda: str(int(r.expovariate(1 / 40))),
            "sqlstate": lambda: r.choice(("57014", "40001", "53300")),
            "peer": lambda: r.choice(("payments", "inventory", "users")),
            "n": lambda: str(r.randint(2, 500)),
            "user": lambda: r.choice(self.users),
            "token": lambda: self.hex(24),
            "ttl": lambda: r.choice(("900s", "3600s", "86400s")),
            "user_id": lambda: self.user_ids[r.choice(self.users)],
            "session_id": lambda: self.hex(16),
            "sku": lambda: f"SKU-{r.randint(10000, 99999)}",
            "qty": lambda: str(r.randint(1, 5)),
            "cart_id": lambda: f"c{self.hex(10)}",
            "order_id": lambda: f"ord-{self.hex(10)}",
            "amount": lambda: f"{r.lognormvariate(3.8, 0.7):.2f}",
            "charge_id": lambda: f"ch_{self.hex(14)}",
            "last4": lambda: f"{r.randint(0, 9999):04d}",
            "provider": lambda: r.choice(("stripe", "adyen", "twilio")),
            "query": lambda: r.choice(_WORDS),
            "tpl": lambda: r.choice(("order_confirmation", "password_reset", "shipping_update")),
            "email": lambda: f"{r.choice(self.users)}@example.com",
            "msg_id": lambda: self.hex(16),
            "phone": lambda: f"+1555{r.randint(1000000, 9999999)}",
            "active": lambda: str(r.randint(5, 60)),
            "idle": lambda: str(r.randint(0, 40)),
            "waiting": lambda: str(r.randint(0, 2)),
            "heap": lambda: f"{r.randint(200, 900)}MB/1024MB",
            "uptime": lambda: f"{r.randint(1, 400)}h",
            "svc": lambda: r.choice(list(SERVICES)),
            "version": lambda: f"{r.randint(1, 4)}.{r.randint(0, 30)}.{r.randint(0, 9)}",
            "build": lambda: self.hex(7),
            "file": lambda: f"/var/lib/app/data/seg-{r.randint(1000, 9999)}.log",
            "pct": lambda: f"{r.randint(95, 100)}%",
            "mount": lambda: "/var/lib/app",
            "thr_pct": lambda: "95%",
            "max": lambda: "200",
            "code": lambda: r.choice(("1", "137", "139")),
            "exc": lambda: _EXCEPTIONS[0][0],
            "handler": lambda: _EXCEPTIONS[0][1],
            "frame": lambda: f"{_EXCEPTIONS[0][2]}:{r.randint(20, 400)}",
        }

    def draw(self, name: str) -> str:
        """A fresh value for slot ``name``."""
        return self._draw[name]()

    def hex(self, n: int) -> str:
        """``n`` hex digits, the first a decimal digit (so maskers see an id, not a word)."""
        return f"{self.rng.randrange(10)}{self.rng.getrandbits(4 * (n - 1)):0{n - 1}x}"

    def exception(self) -> tuple[str, str, str]:
        """An (exception, handler, source file) triple."""
        return self.rng.choice(_EXCEPTIONS)

    def fill_path(self, template: str) -> tuple[str, dict[str, str]]:
        """A concrete path for a route template, and the values of its slots."""
        if "{" not in template:
            return template, {}
        values = {f: self.draw(f) for _, f, _, _ in string.Formatter().parse(template) if f}
        return template.format(**values), values


def duration(ms: float) -> str:
    """A duration token as services print it: ``12.3ms`` or ``1.52s``."""
    return f"{ms:.1f}ms" if ms < 1000 else f"{ms / 1000:.2f}s"


Call = tuple[str, str]  # (callee service, "METHOD /route")
Line = tuple[str, str, float]  # (template, level, probability per successful request)


@dataclass(frozen=True)
class Route:
    """One endpoint (or, for a database proxy, one table) of a service."""

    method: str
    path: str  # the route template, e.g. /cart/{cart_id}
    p50_ms: float  # median time of the route's own work; its calls add to it
    sigma: float = 0.5  # log-normal spread
    weight: float = 1.0
    calls: tuple[Call, ...] = ()
    lines: tuple[Line, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Service:
    """A service of the fleet: its share of traffic, routes and habits."""

    name: str
    weight: float
    routes: tuple[Route, ...]
    error_rate: float = 0.003  # baseline share of 5xx
    client_error_rate: float = 0.02  # baseline share of 4xx
    epoch_ms: bool = False  # timestamps as epoch ms rather than RFC 3339
    sql: bool = False  # a database proxy: query lines, no http
    cpu: float = 20.0  # baseline CPU percent at average traffic

    @property
    def logger(self) -> str:
        return f"{self.name.replace('-', '_')}.app"

    @functools.cached_property
    def hosts(self) -> tuple[str, ...]:
        h = hashlib.blake2b(self.name.encode(), digest_size=3).hexdigest()
        return tuple(f"{self.name}-{h}-{i}" for i in range(3))


R = Route
DB = "postgres-proxy"
FLEET: tuple[Service, ...] = (
    Service("web-gateway", 25, (
        R("GET", "/api/products/{sku}", 40, weight=5, calls=(("catalog", "GET /products/{sku}"),)),
        R("GET", "/api/search", 60, weight=4, calls=(("search", "GET /search"),)),
        R("POST", "/api/cart/{cart_id}/items", 45, weight=2,
          calls=(("cart", "POST /cart/{cart_id}/items"),)),
        R("POST", "/api/checkout", 300, weight=0.6, calls=(("checkout", "POST /checkout"),)),
        R("POST", "/api/login", 60, weight=1, calls=(("auth", "POST /login"),)),
        R("GET", "/api/users/me", 25, weight=1.5, calls=(("users", "GET /users/{user_id}"),)),
        R("GET", "/healthz", 0.8, sigma=0.3, weight=0.5)),
        error_rate=0.002, client_error_rate=0.03, cpu=35),
    Service("auth", 5, (
        R("POST", "/login", 45, weight=2, calls=(("users", "GET /users/{user_id}"),)),
        R("POST", "/token/refresh", 8, lines=(("token_issued", "INFO", 0.8),)),
        R("GET", "/session/{session_id}", 2, weight=3)), error_rate=0.001),
    Service("users", 7, (
        R("GET", "/users/{user_id}", 12, weight=4, calls=((DB, "SELECT users"),),
          lines=(("profile_loaded", "DEBUG", 0.5),)),
        R("PUT", "/users/{user_id}", 30, calls=((DB, "UPDATE users"),))), error_rate=0.002),
    Service("catalog", 10, (
        R("GET", "/products/{sku}", 18, weight=5, calls=((DB, "SELECT products"),),
          lines=(("cache_miss", "DEBUG", 0.15),)),
        R("GET", "/categories/{n}", 10, weight=2),
        R("POST", "/prices/refresh", 900, sigma=0.3, weight=0.05,
          lines=(("price_refresh", "INFO", 1.0),))), error_rate=0.003, epoch_ms=False),
    Service("cart", 7, (
        R("GET", "/cart/{cart_id}", 8, weight=3),
        R("POST", "/cart/{cart_id}/items", 20, weight=2, calls=(("inventory", "GET /stock/{sku}"),),
          lines=(("cart_add", "INFO", 0.9),)),
        R("DELETE", "/cart/{cart_id}/items/{sku}", 9, weight=0.5)), error_rate=0.004),
    Service("checkout", 3, (
        R("POST", "/checkout", 120, sigma=0.4, weight=2,
          calls=(("cart", "GET /cart/{cart_id}"), ("inventory", "POST /reservations"),
                 ("payments", "POST /charges"), ("notifications", "POST /email")),
          lines=(("order_placed", "INFO", 1.0),)),
        R("GET", "/orders/{order_id}", 15, calls=((DB, "SELECT orders"),))),
        error_rate=0.005, cpu=25),
    Service("payments", 2.5, (
        R("POST", "/charges", 180, sigma=0.45, weight=3, calls=((DB, "INSERT charges"),),
          lines=(("charge_ok", "INFO", 1.0), ("provider", "DEBUG", 0.6))),
        R("GET", "/charges/{charge_id}", 10)), error_rate=0.004, epoch_ms=True),
    Service("inventory", 6, (
        R("GET", "/stock/{sku}", 6, weight=3, calls=((DB, "SELECT stock"),),
          lines=(("low_stock", "WARN", 0.01),)),
        R("POST", "/reservations", 25, calls=((DB, "UPDATE stock"),),
          lines=(("reserved", "INFO", 1.0),))), error_rate=0.002, epoch_ms=True),
    Service("search", 9, (
        R("GET", "/search", 45, sigma=0.6, weight=4, lines=(("search", "INFO", 0.7),)),
        R("GET", "/suggest", 8, weight=2)), error_rate=0.003, cpu=45),
    Service("notifications", 3, (
        R("POST", "/email", 40, weight=3, lines=(("email_sent", "INFO", 1.0),)),
        R("POST", "/sms", 120, lines=(("sms_sent", "INFO", 1.0),))),
        error_rate=0.006, epoch_ms=True),
    Service(DB, 12, (
        R("SELECT", "users", 2, weight=3), R("UPDATE", "users", 6),
        R("SELECT", "products", 3, weight=4), R("SELECT", "orders", 4),
        R("INSERT", "charges", 8), R("SELECT", "stock", 2, weight=3),
        R("UPDATE", "stock", 7)), error_rate=0.001, epoch_ms=True, sql=True, cpu=30),
)
SERVICES: dict[str, Service] = {s.name: s for s in FLEET}
ROUTES: dict[tuple[str, str], Route] = {(s.name, r.key): r for s in FLEET for r in s.routes}
# callee -> (caller, caller route, operation) of every call edge
CALLERS: dict[str, list[tuple[str, str, str]]] = {}
for _s in FLEET:
    for _r in _s.routes:
        for _callee, _op in _r.calls:
            CALLERS.setdefault(_callee, []).append((_s.name, _r.key, _op))
ADDRESSES = {s.name: f"10.0.{i}.{10 + i}:{5432 if s.sql else 8443}" for i, s in enumerate(FLEET)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC string with milliseconds."""
    ts = _EPOCH + timedelta(milliseconds=ms)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def daily_shape(t_ms: int) -> float:
    """Traffic multiplier by hour of day (UTC): trough 0.65 near 03:00, peak 1.35 near 15:00."""
    hour = (t_ms / 3_600_000) % 24
    return 1.0 + 0.35 * math.sin(2 * math.pi * (hour - 9) / 24)
