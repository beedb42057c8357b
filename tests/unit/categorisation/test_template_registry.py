"""Template registry: a miner per service, bounds, per-service masking, explosion warnings."""

from __future__ import annotations

import doctest
import random
import string

import pytest

import categorisation.registry as registry_mod
from categorisation.config import MaskingConfig, MaskRule, MinerConfig, RegistryConfig
from categorisation.registry import TemplateExplosion, TemplateRegistry

CFG = RegistryConfig(warmup_lines=500, window_lines=500, max_new_per_window=50)


def web_line(rnd: random.Random) -> str:
    """A line of a healthy web service: a dozen kinds of message, variables masked."""
    i = rnd.randrange(100_000)
    return rnd.choice([
        f"GET /api/v1/items/{i} 200 {i % 90}ms",
        f"POST /api/v1/orders 201 {i % 300}ms user={i}",
        f"user {i} logged in from 10.0.{i % 250}.{i % 200}",
        f"cache miss for key item:{i}",
        f"read tcp 10.0.0.{i % 200}:443: connection reset by peer",
        f"payment {i} captured amount={i % 500}.99 EUR",
        f"worker {i % 8} picked job {i} from queue emails",
        f"slow query: SELECT * FROM orders WHERE id = {i} took {i % 3000}ms",
        "health check ok",
        f"session {i} expired after {i % 60}m",
    ])


def flood_line(rnd: random.Random) -> str:
    """A line whose variables no mask recognises (letters only), in three positions: the
    miner learns a variable first token and one more from the data, not three."""
    tok, tok2, tok3 = ("".join(rnd.choices(string.ascii_letters, k=12)) for _ in range(3))
    return f"{tok} auth {tok2} request {tok3} accepted"


def test_explosion_flagged_on_random_token_flood_not_on_normal_service() -> None:
    reg = TemplateRegistry(CFG)
    rnd = random.Random(1)
    for _ in range(5_000):
        reg.add("web-frontend", web_line(rnd))
    assert reg.pop_events() == []
    assert len(reg.miner("web-frontend")) < 20
    for _ in range(2_000):
        reg.add("web-frontend", web_line(rnd))
        reg.add("gateway", flood_line(rnd))
    events = reg.pop_events()
    assert [e.service for e in events] == ["gateway"]  # once, not every window
    e = events[0]
    assert isinstance(e, TemplateExplosion)
    assert e.message == "template explosion — likely a masking bug"
    assert e.new_in_window > CFG.max_new_per_window and len(e.samples) == 3
    assert reg.stats()["exploding_services"] == 1


def test_explosion_after_warmup_in_a_settled_service_and_rearm() -> None:
    reg = TemplateRegistry(CFG)
    rnd = random.Random(2)
    for _ in range(3_000):
        reg.add("api", web_line(rnd))
    for _ in range(500):  # a deploy starts logging an unmasked token
        reg.add("api", flood_line(rnd))
    assert [e.service for e in reg.pop_events()] == ["api"]
    for _ in range(1_500):  # fixed: quiet windows re-arm the flag
        reg.add("api", web_line(rnd))
    assert reg.stats()["exploding_services"] == 0
    for _ in range(500):
        reg.add("api", flood_line(rnd))
    assert [e.service for e in reg.pop_events()] == ["api"]


def test_no_explosion_during_warmup_of_a_fresh_service() -> None:
    reg = TemplateRegistry(RegistryConfig(warmup_lines=2_000, window_lines=500))
    rnd = random.Random(3)
    for _ in range(1_500):
        reg.add("new", flood_line(rnd))
    assert reg.pop_events() == []


def test_services_are_bounded_lru_with_a_counter() -> None:
    reg = TemplateRegistry(RegistryConfig(max_services=3))
    for s in ["a", "b", "c"]:
        reg.add(s, "started")
    reg.add("a", "started")  # a is now the most recent
    reg.add("d", "started")
    assert "b" not in reg and {"a", "c", "d"} <= {s for s in "abcd" if s in reg}
    assert reg.evicted_services == 1 and len(reg) == 3


def test_templates_per_service_are_bounded() -> None:
    reg = TemplateRegistry(RegistryConfig(miner=MinerConfig(max_clusters=50)))
    rnd = random.Random(4)
    for _ in range(500):
        reg.add("flood", flood_line(rnd))
    assert len(reg.miner("flood")) == 50
    assert reg.evicted_templates("flood") == 450
    assert reg.stats()["evicted_templates"] == 450


def test_per_service_masking_exact_then_glob_then_default() -> None:
    order_ids = MaskingConfig(extra=[MaskRule(pattern=r"\bORD[A-Z]+\b")])
    reg = TemplateRegistry(RegistryConfig(masking={"orders-*": order_ids}))
    assert reg.miner_config("orders-api").masking == order_ids
    assert reg.miner_config("web").masking == MaskingConfig()
    a = reg.add("orders-api", "order ORDXQZ shipped")
    b = reg.add("orders-api", "order ORDKPL shipped")
    assert a.template_id == b.template_id and b.template == "order <*> shipped"
    assert reg.add("web", "order ORDXQZ shipped").template == "order ORDXQZ shipped"


def test_snapshot_restore_all_and_one_service() -> None:
    reg = TemplateRegistry(CFG)
    rnd = random.Random(5)
    for _ in range(2_000):
        reg.add("web", web_line(rnd))
        reg.add("api", web_line(rnd))
    twin = TemplateRegistry(CFG)
    twin.restore(reg.snapshot())
    assert twin.miner("web").templates() == reg.miner("web").templates()
    line = "user 5 logged in from 10.0.0.1"
    assert twin.add("api", line).template_id == reg.add("api", line).template_id
    one = TemplateRegistry(CFG)
    data = reg.snapshot_service("web")
    assert data is not None and reg.snapshot_service("nope") is None
    one.restore_service("web", data)
    assert one.miner("web").templates() == reg.miner("web").templates()
    assert one.stats()["templates"] == len(reg.miner("web"))
    with pytest.raises(ValueError, match="version"):
        one.restore(b'{"v": 0}')


def test_doctests() -> None:
    assert doctest.testmod(registry_mod).failed == 0


def test_first_tokens_seen_as_values_in_another_service_are_a_variable() -> None:
    # HTTP methods start one service's access lines, and fill variables in another's calls
    # and slow requests: the fleet shares the value type, so the access lines are one
    # template (the first id kept), while one-word siblings never seen as values stay apart.
    reg = TemplateRegistry()
    for method in ("GET", "POST"):
        reg.add("gateway", f"call to cart {method} /cart/items succeeded in 3ms")
        reg.add("gateway", f"slow request {method} /home took 90ms threshold 50ms")
    assert set(reg.miner("gateway").templates().values()) == {
        "call to cart <*> succeeded in <*>", "slow request <*> took <*> threshold <*>"}
    get = reg.add("cart", "GET /cart/c1 completed 200 in 7.0ms client=10.0.0.1")
    post = reg.add("cart", "POST /cart/c2/items completed 201 in 9.1ms client=10.0.0.2")
    assert post.template == "<*> completed <*> in <*> client=<*>"
    assert reg.resolve("cart", get.template_id) == reg.resolve("cart", post.template_id) \
        == get.template_id
    opened = reg.add("cart", "opened session for c1")
    closed = reg.add("cart", "closed session for c1")
    assert opened.template_id != closed.template_id
    assert closed.template == "closed session for <*>"


def test_first_tokens_learnt_as_values_later_merge_the_templates_made_before() -> None:
    # The access lines come first (a template per method, cached); once another service
    # shows the methods to be values, the next access line merges them, the oldest id kept.
    reg = TemplateRegistry()
    lines = {m: f"{m} /cart/c1 completed 200 in 7.0ms client=10.0.0.1" for m in ("GET", "POST")}
    before = {m: reg.add("cart", line).template_id for m, line in lines.items() for _ in range(3)}
    assert len(set(before.values())) == 2
    for method in ("GET", "POST"):
        reg.add("gateway", f"call to cart {method} /cart/items succeeded in 3ms")
        reg.add("gateway", f"slow request {method} /home took 90ms threshold 50ms")
    after = reg.add("cart", lines["POST"])
    assert after.template == "<*> completed <*> in <*> client=<*>"
    assert after.template_id == before["GET"]
    assert {reg.resolve("cart", t) for t in before.values()} == {before["GET"]}
    assert reg.add("cart", lines["GET"]).template_id == before["GET"]


def test_restored_services_keep_sharing_the_words_seen_as_values() -> None:
    # A worker restores each service from its own snapshot. The restored services must still
    # share one vocabulary, holding the words they had seen filling variables: the methods
    # learnt from the gateway before the restart make the cart's access lines one template
    # after it, as they would have without the restart.
    reg = TemplateRegistry()
    for method in ("GET", "POST"):
        reg.add("gateway", f"call to cart {method} /cart/items succeeded in 3ms")
        reg.add("gateway", f"slow request {method} /home took 90ms threshold 50ms")
    reg.add("cart", "opened session for c1")
    twin = TemplateRegistry()
    for service in ("cart", "gateway"):  # the cart first: it knows no values of its own
        data = reg.snapshot_service(service)
        assert data is not None
        twin.restore_service(service, data)
    lines = ("GET /cart/c1 completed 200 in 7.0ms client=10.0.0.1",
             "POST /cart/c2/items completed 201 in 9.1ms client=10.0.0.2")
    got, want = ([r.add("cart", line) for line in lines] for r in (twin, reg))
    assert [m.template for m in got] == [m.template for m in want]
    assert got[1].template == "<*> completed <*> in <*> client=<*>"
    assert twin.miner("cart")._vocab is twin.miner("gateway")._vocab
    # and a service first seen after the restart joins the same vocabulary
    assert twin.miner("search")._vocab is twin.miner("cart")._vocab
    # a service restored again over its own state (a partition handed back) still shares
    # it, and its old clusters no longer answer for values shared across the fleet
    old = list(twin.miner("gateway")._clusters.values())
    data = twin.snapshot_service("gateway")
    assert data is not None
    twin.restore_service("gateway", data)
    assert twin.miner("gateway")._vocab is twin.miner("cart")._vocab
    assert twin.miner("gateway")._pairs is twin.miner("cart")._pairs
    assert old and not any(c.alive for c in old)
