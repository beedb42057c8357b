"""Template mining: stable ids, generalisation, snapshots, bounds, hostile input."""

from __future__ import annotations

import random
import string

from categorisation.config import MinerConfig
from categorisation.miner import TemplateMiner, template_id


def test_same_template_gets_same_id_and_counts() -> None:
    m = TemplateMiner("api")
    a = m.add("user 17 logged in from 10.0.0.1")
    b = m.add("user 99 logged in from 10.0.0.2")
    assert a.is_new and not b.is_new
    assert a.template_id == b.template_id
    assert b.template == "user <*> logged in from <*>"
    assert b.size == 2


def test_different_messages_get_different_ids() -> None:
    m = TemplateMiner("api")
    a = m.add("cache warmed up")
    b = m.add("disk almost full")
    assert a.template_id != b.template_id


def test_ids_are_stable_across_miners_and_depend_on_service() -> None:
    line = "worker 3 started"
    assert TemplateMiner("a").add(line).template_id == TemplateMiner("a").add(line).template_id
    assert TemplateMiner("a").add(line).template_id != TemplateMiner("b").add(line).template_id
    assert TemplateMiner("a").add(line).template_id == template_id("a", "worker <*> started")


def test_generalised_template_keeps_its_first_id() -> None:
    m = TemplateMiner("sshd")
    first = m.add("Accepted password for alice from 10.0.0.7 port 22 ssh2")
    second = m.add("Accepted password for bob from 10.0.0.9 port 22 ssh2")
    assert second.change == "changed"
    assert second.template == "Accepted password for <*> from <*> port <*> ssh2"
    assert second.template_id == first.template_id
    assert m.add("Accepted password for carol from 10.0.0.1 port 22 ssh2").change == "same"


def test_key_value_generalises_to_key_wildcard() -> None:
    m = TemplateMiner("pam")
    m.add("auth failure; logname= tty=ssh ruser= rhost=alpha.example user=root")
    r = m.add("auth failure; logname= tty=ssh ruser= rhost=beta.example user=root")
    assert r.template == "auth failure; logname= tty=ssh ruser= rhost=<*> user=root"
    # an empty value is not a value of rhost=<*>
    other = m.add("auth failure; logname= tty=ssh ruser= rhost= user=guest")
    assert other.template_id != r.template_id


def test_snapshot_restore_keeps_ids_templates_and_sizes() -> None:
    m = TemplateMiner("svc")
    lines = [f"job {i} finished in {i}ms" for i in range(5)] + ["shutting down now"]
    ids = {m.add(line).template_id for line in lines}
    data = m.snapshot()
    twin = TemplateMiner("other-name-replaced-by-snapshot")
    twin.restore(data)
    assert twin.service == "svc"
    assert twin.templates() == m.templates()
    r = twin.add("job 77 finished in 3ms")
    assert r.template_id in ids and r.size == 6 and r.change == "same"
    assert twin.snapshot() != data  # the size moved on


def test_cluster_cap_evicts_least_recently_used() -> None:
    m = TemplateMiner("svc", MinerConfig(max_clusters=3))
    keep = m.add("alpha event happened").template_id
    for word in ("bravo", "charlie", "delta", "echo"):
        m.add("alpha event happened")
        m.add(f"{word} thing occurred")
    assert len(m) == 3
    assert keep in m.templates()
    assert "bravo thing occurred" not in m.templates().values()


def test_flood_of_unique_lines_stays_bounded() -> None:
    rng = random.Random(7)
    m = TemplateMiner("svc", MinerConfig(max_clusters=200, max_leaf_clusters=50))
    for _ in range(3000):
        words = ["".join(rng.choices(string.ascii_letters, k=8)) for _ in range(6)]
        m.add(" ".join(words))
    assert len(m) <= 200
    assert len(m.snapshot()) < 200 * 200


def test_hostile_inputs_do_not_crash() -> None:
    m = TemplateMiner("svc")
    assert m.add("").template == ""
    assert m.add("   ").template_id == m.add("").template_id
    big = m.add("x" * 65536 + " tail")
    assert len(big.template) <= m.config.masking.max_line_chars
    assert m.add("1 2 3 4 5 6").template == "<*> <*> <*> <*> <*> <*>"
    many = m.add(" ".join(["tok"] * 10_000))
    assert len(many.template.split()) == m.config.masking.max_tokens
    odd = m.add("bad \udcff byte \ufffd")
    odd.template.encode("utf-8")
    restored = TemplateMiner("svc")
    restored.restore(m.snapshot())
    assert restored.templates() == m.templates()
