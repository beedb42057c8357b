"""Masking: every kind of variable becomes <*>, constant words stay."""

from __future__ import annotations

import doctest

import pytest

import categorisation.masking as masking_mod
from categorisation.config import MaskingConfig, MaskRule
from categorisation.masking import Masker, mask_hashes


@pytest.fixture
def masker() -> Masker:
    return Masker(MaskingConfig())


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("took 42 tries", "took <*> tries"),
        ("value -3.5e3 and 1,024", "value <*> and <*>"),
        ("job attempt_1445_0020_m_000003_0 done", "job <*> done"),
        ("addr 0x7ffe12 and deadbeef1234", "addr <*> and <*>"),
        ("req 123e4567-e89b-12d3-a456-426614174000 ok", "req <*> ok"),
        ("from 10.1.2.3 and 10.1.2.3:8080", "from <*> and <*>"),
        ("peer [2001:db8::8a2e:370:7334]:443 and fe80::1", "peer <*> and <*>"),
        ("mail bob.smith+x@example.co.uk now", "mail <*> now"),
        ("read /var/log/app.log and ./rel/x and C:\\temp\\x.txt", "read <*> and <*> and <*>"),
        ("GET https://api.example.com/v1/items?id=3 done", "GET <*> done"),
        ("slow: 12ms then 3.5s then 2h", "slow: <*> then <*> then <*>"),
        ("opened 'my file.txt' and \"other one\"", "opened '<*>' and \"<*>\""),
        ("at Sun Jul 24 02:38:25 2005 and 2015-10-18 18:01:47,978", "at <*> and <*>"),
        ("(uid=0) status=ok", "(uid=<*>) status=ok"),
        ("Failed password for root port 22", "Failed password for root port <*>"),
        # redaction's keyed hashes (privacy.redact), letters only or digits only too
        ("to <email#9f2c0a17e4b3d855> from <ipv4#abcdefabcdefabcd>, <ipv4#1234567812345678>",
         "to <email#<*>> from <ipv4#<*>>, <ipv4#<*>>"),
        ("issue #42 <card> <b#x>", "issue #<*> <card> <b#x>"),
    ],
)
def test_masks_each_variable_kind(masker: Masker, raw: str, masked: str) -> None:
    assert masker.mask(raw) == masked


def test_apostrophes_in_words_are_not_quotes(masker: Masker) -> None:
    assert masker.mask("can't get client address, don't retry") == (
        "can't get client address, don't retry")


def test_key_values_flag_masks_constant_values() -> None:
    m = Masker(MaskingConfig(key_values=True))
    assert m.mask("status=ok user=bob logname=") == "status=<*> user=<*> logname="


def test_flags_turn_kinds_off() -> None:
    m = Masker(MaskingConfig(ips=False, numbers=False))
    assert m.mask("from 10.1.2.3 took 42") == "from 10.1.2.3 took 42"


def test_extra_rules_run_first() -> None:
    cfg = MaskingConfig(extra=[MaskRule(pattern=r"user-[a-z]+", replacement="<USER>")])
    assert Masker(cfg).mask("login user-alice ok") == "login <USER> ok"


def test_bad_extra_regex_is_refused() -> None:
    with pytest.raises(ValueError):
        MaskingConfig(extra=[MaskRule(pattern="(unclosed")])


def test_long_lines_and_many_tokens_are_capped() -> None:
    m = Masker(MaskingConfig(max_line_chars=100, max_tokens=5))
    assert len(m.mask_tokens("a" * 70_000)) == 1
    assert len(m.mask_tokens("a" * 70_000)[0]) == 100
    assert m.mask_tokens("w " * 1000) == ["w"] * 5


def test_surrogates_and_replacement_chars_are_tolerated(masker: Masker) -> None:
    out = masker.mask("bad \udcff byte \ufffd here 12")
    assert out.endswith("here <*>")
    out.encode("utf-8")  # no lone surrogate left


_FRAGMENTS = ["0x1f", "abc", "deadbeef", "-", ".", ":", "::", "/", "\\", "@", "=", "ms", "s", "h",
              "1", "42", "3.5", "http://", "a.b", "<*>", "_", "+", ",", "~", "C:\\", "user", "ff",
              "ABCDEF", "é", "٣", "[", "]", "'", '"', "10.0.0.7", "fe80::1", "12345678", "e3",
              "ssh2", "%", ";", ")", ">", "*", "<"]


@pytest.mark.parametrize("config", [
    MaskingConfig(), MaskingConfig(key_values=True), MaskingConfig(numbers=False, hex=False),
    MaskingConfig(ips=False, paths=False), MaskingConfig(extra=[MaskRule(pattern=r"req-\w+")]),
], ids=["default", "key_values", "no_numbers", "no_ips_paths", "extra"])
def test_fast_path_equals_the_full_rule_chain(config: MaskingConfig) -> None:
    import random

    rng = random.Random(11)
    m = Masker(config)
    for _ in range(20_000):
        token = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 6)))
        # and a token of the same shape (other digits 1-9), which may come from the shape cache
        twin = "".join(rng.choice("123456789") if c in "123456789" else c for c in token)
        assert m.mask_token(token) == m.mask_token_slow(token), token
        assert m.mask_token(twin) == m.mask_token_slow(twin), twin


def test_letter_only_uuid_and_glued_wildcards_are_masked(masker: Masker) -> None:
    assert masker.mask_token("deadbeef-dead-beef-dead-beefdeadbeef") == "<*>"
    assert masker.mask_token("<*><*>") == "<*>"


@pytest.mark.parametrize("config", [MaskingConfig(), MaskingConfig(key_values=True),
                                    MaskingConfig(numbers=False, hex=False)],
                         ids=["default", "key_values", "no_numbers"])
def test_line_shape_cache_equals_masking_each_line(config: MaskingConfig) -> None:
    """Lines answered by their shape (digits 1-9 alike) mask as the line itself would,
    dates and quotes included; a fresh masker with no caches is the reference."""
    import random

    rng = random.Random(7)
    words = [*_FRAGMENTS, " ", "  ", "Jul 24 02:38:25 2005", "2015-10-18 18:01:47,978",
             "'a 1 b'", '"x 22"', "Sun", "Jul", "24", "02:38"]
    m = Masker(config)
    for _ in range(5_000):
        line = " ".join("".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
                        for _ in range(rng.randint(1, 8)))
        twin = "".join(rng.choice("123456789") if c in "123456789" else c for c in line)
        for text in (line, twin):
            assert m.mask_line(text) == tuple(Masker(config).mask_tokens(text)), text


def test_lines_differing_in_redaction_hashes_share_one_shape() -> None:
    """Each user's e-mail hashes differently; the masker answers such lines by one line
    shape, not by masking each line afresh (what made redacted streams slow to mine)."""
    m = Masker(MaskingConfig())
    lines = [f"sent receipt to <email#{i:016x}{'ab'[i % 2]}> for order 7{i % 9 + 1}"
             for i in range(50)]
    assert {m.mask_line(line) for line in lines} == {
        ("sent", "receipt", "to", "<email#<*>>", "for", "order", "<*>")}
    assert m._lines is not None and len(m._lines) == 1


def test_hash_masking_equals_its_regex() -> None:
    """`mask_hashes` (string methods) masks exactly what its definition as a regex does."""
    import random
    import re

    spec = re.compile(r"(?<=[a-z0-9_])#[0-9a-f]{8,64}>")
    rng = random.Random(3)
    parts = ["<email", "<ipv4", "#", ">", "9f2c0a17", "e4b3d855", "0" * 60, "ABCDEF12", " ", "x",
             "<*>", "_", "issue #", "#>", "##"]
    for _ in range(20_000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 9)))
        assert mask_hashes(text) == spec.sub("#<*>>", text), text


def test_doctests() -> None:
    assert doctest.testmod(masking_mod).failed == 0
