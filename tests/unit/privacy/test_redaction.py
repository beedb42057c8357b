"""The shipped privacy rules against a corpus of PII forms (none may survive) and of
look-alikes (none may change); hashing, counters, user fields, config errors."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from pii_corpus import LOOKALIKES, corpus  # type: ignore[import-not-found]

from privacy.redact import Redactor
from privacy.rules import BUILTINS, SCREEN_BITS, luhn_ok, screen_mask
from privacy.settings import PrivacyConfig, RuleConfig, load_privacy
from schemas.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
KEY = b"unit-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def shipped() -> Redactor:
    return Redactor(load_privacy(ROOT / "deploy/config/privacy.yaml"), KEY)


def test_the_corpus_is_large_and_varied() -> None:
    kinds = {k for k, _, _ in corpus()}
    assert len(corpus()) >= 400
    assert kinds == {"email", "ipv4", "ipv6", "card", "phone", "secret"}


def test_no_pii_form_survives(shipped: Redactor) -> None:
    missed = [(kind, line, shipped.text(line)) for kind, line, pii in corpus()
              if pii in shipped.text(line)]
    assert missed == [], f"{len(missed)} misses, e.g. {missed[:5]}"


@pytest.mark.parametrize("line", LOOKALIKES)
def test_look_alikes_stay(shipped: Redactor, line: str) -> None:
    assert shipped.text(line) == line


def test_hash_is_keyed_and_stable(shipped: Redactor) -> None:
    a = shipped.text("login from bob@example.com")
    assert a == shipped.text("login from bob@example.com")  # one user's events still join
    other = Redactor(load_privacy(ROOT / "deploy/config/privacy.yaml"), b"another-key-" * 3)
    assert other.text("login from bob@example.com") != a  # without the key, no confirming
    assert a.startswith("login from <email#") and len(a.split("#")[1].rstrip(">")) == 16


def test_event_fields_and_counters() -> None:
    r = Redactor(load_privacy(ROOT / "deploy/config/privacy.yaml"), KEY)
    e = {"message": "reset for ann@example.com from 203.0.113.9", "service": "auth",
         "user": {"id": "ann", "ip": "203.0.113.9", "action": "login", "outcome": "failure"},
         "attrs": {"note": "card 4111 1111 1111 1111", "nested": [{"phone": "+1 415 555 0100"}],
                   "n": 3}}
    r.event(e)
    assert "ann@example.com" not in e["message"] and "203.0.113.9" not in e["message"]
    assert e["user"]["id"] == r.hash("ann") and e["user"]["ip"] == r.hash("203.0.113.9")
    assert e["user"]["action"] == "login" and e["user"]["outcome"] == "failure"
    assert e["attrs"] == {"note": "card <card>", "nested": [{"phone": "<phone>"}], "n": 3}
    # the message's address and user.ip hash alike: one address joins across fields
    assert f"<ipv4#{r.hash('203.0.113.9')}>" in e["message"]
    assert dict(r.counts) == {"email": 1, "ipv4": 1, "user.id": 1, "user.ip": 1, "card": 1,
                              "phone": 1}


def test_dead_letter_bytes_are_redacted_and_other_bytes_kept(shipped: Redactor) -> None:
    raw = b'{"message": "mail eve@example.com", "bad": \xff}'
    out = shipped.raw(raw)
    assert b"eve@example.com" not in out and out.endswith(b'"bad": \xff}')
    assert shipped.raw(b"\xff\xfe no pii") == b"\xff\xfe no pii"


def test_custom_rule_with_screen_words() -> None:
    cfg = PrivacyConfig(rules=(RuleConfig(name="employee", pattern=r"\bEMP-(\d{5})\b",
                                          screen_words=("emp-",), action="hash"),))
    r = Redactor(cfg, KEY)
    assert r.text("badge EMP-12345 used") == f"badge EMP-<employee#{r.hash('12345')}> used"
    assert r.text("emp 12345") == "emp 12345"


def test_screens_remembered_by_shape_change_nothing() -> None:
    """A warm redactor (masks kept by shape) redacts as one that screens every line anew,
    also where lines of one shape differ: a card number and an id failing Luhn."""
    lines = [line for _, line, _ in corpus()] + LOOKALIKES
    lines += ["charge 4111 1111 1111 1111 declined", "charge 4111 1111 1111 1112 declined",
              "from 10.0.0.1 ok", "from 999.0.0.1 ok"]
    cfg = load_privacy(ROOT / "deploy/config/privacy.yaml")
    warm = Redactor(cfg, KEY)
    for _ in range(2):
        assert [warm.text(x) for x in lines] == [Redactor(cfg, KEY).text(x) for x in lines]


_PIECES = ("4", "1", "0", "7", "12", "415", " ", "-", ".", "(", ")", "+", ":", "::", "=", "@",
           "a", "Z", "_", "example.com", "bearer ", "Basic ", "api_key", "Password", "token",
           "AUTH", "secret", "AKIA", "ghp_", "xoxb-", "sk_live_", "eyJ", "glpat-", "fe80",
           '"', "'", "/", "x" * 8, "4111 1111 1111 1111", "10.0.0.1")


def test_every_match_passes_its_screen() -> None:
    """The screens may let through more than their rule matches, never less (but for "Basic
    <credentials>" on a line without a secret word, which the bearer rule has never seen)."""
    rng = random.Random(11)
    rules = [(b, re.compile(b.pattern, b.flags)) for b in BUILTINS.values()]
    secret_words = ("key", "secret", "token", "pass", "pwd", "auth", "credential", "bearer")
    for _ in range(20_000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 14)))
        low = text.lower()
        mask = screen_mask(text, low)
        for b, rx in rules:
            if b.screen == "bearer_word" and not any(w in low for w in secret_words):
                continue
            if not mask & SCREEN_BITS[b.screen] and any(
                    b.check is None or b.check(m.group(b.group)) for m in rx.finditer(text)):
                raise AssertionError(f"{b.screen} screen misses {text!r}")


def test_custom_screen_word_with_digits() -> None:
    cfg = PrivacyConfig(rules=(RuleConfig(name="emp", pattern=r"\bEMP-1(\d{4})\b",
                                          screen_words=("emp-1",)),))
    r = Redactor(cfg, KEY)
    assert r.text("badge EMP-12345 used") == "badge EMP-1<emp> used"
    assert r.text("badge EMP-23456 used") == "badge EMP-23456 used"  # same shape, no match
    assert r.text("badge EMP-12345 used") == "badge EMP-1<emp> used"


def test_luhn() -> None:
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")
    assert not luhn_ok("1234")


@pytest.mark.parametrize(("text", "where"), [
    ("rules:\n  - name: x\n    kind: nope\n", ":3: rules.0.kind"),
    ("rules:\n  - name: x\n    kind: custom\n", "2: rules.0.pattern"),
    ("rules:\n  - name: x\n    kind: custom\n    pattern: '('\n", ":4: rules.0.pattern"),
    ("rules:\n  - name: x\n    kind: email\n  - name: x\n    kind: card\n", "rules.1.name"),
    ("user:\n  id: drop\n", "user.id"),
])
def test_bad_rule_files_name_file_line_and_field(tmp_path: Path, text: str,
                                                 where: str) -> None:
    p = tmp_path / "privacy.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_privacy(p)
    assert str(p) in str(e.value) and where in str(e.value)


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Redactor(PrivacyConfig(), b"short")


def test_ipv4_pattern_keeps_only_valid_addresses() -> None:
    """The IPv4 pattern checks its octets itself (0-255, no leading zero): on random dotted
    digit runs it replaces exactly what a looser pattern plus a per-match check did."""
    loose = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")

    def ok(text: str) -> bool:
        return all(int(p) <= 255 and (p == "0" or p[0] != "0") for p in text.split("."))

    strict = re.compile(BUILTINS["ipv4"].pattern)
    rng = random.Random(5)
    pieces = ["0", "1", "9", "10", "25", "255", "256", "300", "010", "199", "249", ".", ".",
              ".", " ", "a", ":", "-", "1000"]
    for _ in range(30_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 16)))
        want = loose.sub(lambda m: "<ip>" if ok(m.group()) else m.group(), text)
        assert strict.sub("<ip>", text) == want, text
