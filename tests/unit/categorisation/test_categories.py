"""Rule-based categories and priorities of web-fleet log templates; the YAML config."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import categorisation.categories as categories
from categorisation.categories import (
    CategoriesConfig,
    Categoriser,
    CategoryRule,
    load_categories,
    normalise,
)
from categorisation.miner import TemplateMiner
from schemas.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]

# (level, raw message, expected category) — as the services of a web fleet log them.
FLEET = [
    ("ERROR", "java.net.SocketTimeoutException: Read timed out", "timeout"),
    ("ERROR", "context deadline exceeded while calling inventory.GetStock", "timeout"),
    ("ERROR", "grpc: DEADLINE_EXCEEDED calling recommendations", "timeout"),
    ("ERROR", "dial tcp 10.0.3.4:5432: connect: connection refused", "connection"),
    ("ERROR", "Error: connect ECONNREFUSED 127.0.0.1:6379", "connection"),
    ("WARN", "read tcp 10.0.0.5:443: connection reset by peer", "connection"),
    ("ERROR", "write: broken pipe", "connection"),
    ("ERROR", "write /var/lib/data/seg-0001: no space left on device", "resource_exhaustion"),
    ("ERROR", "java.lang.OutOfMemoryError: Java heap space", "resource_exhaustion"),
    ("WARN", "accept4: too many open files; retrying in 5ms", "resource_exhaustion"),
    ("ERROR", "Memory cgroup out of memory: Killed process 1234 (java)", "resource_exhaustion"),
    ("WARN", "Failed password for invalid user admin from 203.0.113.9 port 52144 ssh2",
     "authentication"),
    ("INFO", "login failed for user alice@example.com: invalid credentials", "authentication"),
    ("WARN", "Permission denied: user 42 cannot write to bucket reports", "authorisation"),
    ("INFO", "GET /admin/settings 403 Forbidden", "authorisation"),
    ("ERROR", "circuit breaker open for payments-api after 5 failures", "dependency_failure"),
    ("WARN", "Received 503 Service Unavailable from catalog-service", "dependency_failure"),
    ("ERROR", "missing environment variable STRIPE_API_KEY", "configuration"),
    ("WARN", "request validation failed: field 'email' must be a valid address", "validation"),
    ("WARN", "slow query: SELECT * FROM orders WHERE user_id = 5 took 2300ms", "performance"),
    ("ERROR", "checksum mismatch for block 0x7fa3 on replica 2", "data_integrity"),
    ("ERROR", 'duplicate key value violates unique constraint "orders_pkey"', "data_integrity"),
    ("WARN", "possible SQL injection attempt blocked from 198.51.100.23", "security"),
    ("WARN", "reverse mapping checking getaddrinfo for host.example [10.1.2.3] failed - "
     "POSSIBLE BREAK-IN ATTEMPT!", "security"),
    ("ERROR", "Traceback (most recent call last):", "exception"),
    ("ERROR", "NullPointerException at com.shop.cart.CartService.total(CartService.java:88)",
     "exception"),
    ("ERROR", "panic: runtime error: invalid memory address or nil pointer dereference",
     "exception"),
    ("INFO", "GET /api/v1/items/42 200 12ms", "unknown"),
    ("INFO", "user 17 logged in from 10.0.0.1", "unknown"),
    ("INFO", "Cache warmed with 1200 entries", "unknown"),
]


@pytest.mark.parametrize(("level", "line", "expected"), FLEET)
def test_fleet_templates_get_their_category(level: str, line: str, expected: str) -> None:
    template = TemplateMiner("web").add(line).template
    assert Categoriser().categorise(template, level).category == expected


def test_keywords_match_whole_words_only() -> None:
    c = Categoriser()
    assert c.text_category("user <*> updated the timeoutless flag") is None
    assert c.text_category("spoomkilled process") is None  # not "oom killed"
    assert c.text_category("3 timeouts in a row") == "timeout"  # plural allowed


def test_normalise_splits_code_identifiers() -> None:
    assert normalise("SocketTimeoutException") == "socket timeout exception"
    assert normalise("DEADLINE_EXCEEDED <*> HTTPError") == "deadline exceeded http error"


def test_priority_can_be_higher_than_the_level() -> None:
    c = Categoriser()
    assert c.categorise("disk full on <*>, rotating logs", "INFO").priority == "P2"
    assert c.categorise("possible sql injection from <*>", "INFO").priority == "P2"
    assert c.categorise("job <*> finished", "FATAL").priority == "P1"
    assert c.categorise("job <*> finished", "CRITICAL").priority == "P1"
    assert c.categorise("job <*> finished", "ERROR").priority == "P2"
    # A category never lowers what the level says, and common trouble keeps the level's.
    assert c.categorise("read tcp <*>: connection reset by peer", "INFO").priority == "P4"
    assert c.categorise("read tcp <*>: connection reset by peer", "FATAL").priority == "P1"


def test_signals_categorise_when_the_text_says_nothing() -> None:
    c = Categoriser()
    t = "<*> <*> completed in <*>"
    assert c.categorise(t, http_status=401).category == "authentication"
    assert c.categorise(t, http_status=403).category == "authorisation"
    assert c.categorise(t, http_status=504).category == "timeout"
    assert c.categorise(t, http_status=200).category == "unknown"
    assert c.categorise(t, peer_ok=False).category == "dependency_failure"
    assert c.categorise(t, user_outcome="failure").category == "authentication"
    assert c.categorise(t, user_outcome="denied").category == "authorisation"
    # The text wins over the signals.
    assert c.categorise("upstream request timed out", http_status=503).category == "timeout"


def test_config_adds_categories_and_extends_builtins() -> None:
    cfg = CategoriesConfig(categories=[
        CategoryRule(name="payment_declined", keywords=["card declined"], priority="P3"),
        CategoryRule(name="timeout", keywords=["took longer than"]),
        CategoryRule(name="exception", keywords=["oops"], replace=True),
    ])
    c = Categoriser(cfg)
    assert c.categorise("payment <*>: card declined", "INFO") == ("payment_declined", "P3")
    assert c.text_category("render took longer than <*>") == "timeout"
    assert c.text_category("read timed out") == "timeout"  # built-in keywords kept
    assert c.text_category("oops at <*>") == "exception"
    assert c.text_category("Traceback (most recent call last):") is None  # replaced
    assert c.categories[0] == "payment_declined" and c.categories[-1] == "unknown"


def test_result_is_cached_per_template() -> None:
    c = Categoriser(cache_size=2)
    assert c.text_category("read timed out") == "timeout"
    assert c._cache == {"read timed out": "timeout"}
    c.text_category("a")
    c.text_category("b")  # the bound clears the cache, results stay right
    assert len(c._cache) <= 2
    assert c.text_category("read timed out") == "timeout"


def test_sample_config_loads() -> None:
    cfg = load_categories(REPO / "deploy" / "config" / "categories.yaml")
    c = Categoriser(cfg)
    assert c.categorise("payment <*> failed: card declined", "INFO").category == \
        "payment_declined"
    assert c.categorise("possible sql injection from <*>", "WARN").priority == "P1"


def test_bad_config_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "categories.yaml"
    bad.write_text("categories:\n  - name: ok\n    keywords: [a]\n  - name: x\n"
                   "    priority: P9\n")
    with pytest.raises(ConfigError, match=r"categories\.yaml:5: categories\.1\.priority"):
        load_categories(bad)
    bad.write_text("categories:\n  - name: x\n    patterns: ['(unclosed']\n")
    with pytest.raises(ConfigError, match=r":3: categories\.0\.patterns.*bad regex"):
        load_categories(bad)
    bad.write_text("categories: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_categories(bad)


def test_doctests() -> None:
    assert doctest.testmod(categories).failed == 0
