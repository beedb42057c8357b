"""The redactor: applies the privacy rules to a log event in place, before anything else
sees it (ingest calls it right after validation, so rows, templates, windows, alerts and
notifications only ever hold the redacted text).

A rule either *redacts* a match (``<email>``) or replaces it with a *keyed hash*
(``<email#9f2c…>``, keyed BLAKE2b): without the key nobody can confirm a guessed value,
and one user's events still join on the same token. Whole ``user.id`` / ``user.ip`` values
are hashed bare, so the security detectors still count per user and per address.

>>> from privacy.settings import PrivacyConfig, RuleConfig
>>> r = Redactor(PrivacyConfig(rules=(RuleConfig(name="email", kind="email", action="hash"),
...     RuleConfig(name="card", kind="card"))), b"k" * 32)
>>> r.text("mail bob@example.com paid 4111-1111-1111-1111", "message")
'mail <email#3a82f96510d851dd> paid <card>'
>>> dict(r.counts)
{'email': 1, 'card': 1}
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from privacy.rules import BUILTINS, SCREEN_BITS, screen_mask
from privacy.settings import PrivacyConfig, PrivacySettings, RuleConfig, hash_key, load_privacy

_CACHE_MAX = 200_000
# Screen masks remembered by the *shape* of a text: its UTF-8 bytes with every digit made
# 0. Two texts of one shape pass the same screens (no screen word holds a digit, and the
# numeric screens look only at where digits are), and log lines repeat a few shapes with
# different numbers, so most lines cost a translate and a dict look-up instead of the
# screens. Longer texts are screened directly (their shapes rarely repeat).
_SHAPES_MAX = 50_000
_SHAPE_MAX_CHARS = 300
_SHAPE = bytes.maketrans(b"123456789", b"000000000")
_ZERO_DIGITS = str.maketrans("123456789", "000000000")


class _Rule:
    """One compiled rule: its regex, the check of a match, what replaces it."""

    __slots__ = ("action", "check", "counts", "group", "hasher", "name", "repl", "rx",
                 "screen_key", "sub", "words")

    def __init__(self, cfg: RuleConfig, counts: dict[str, int],
                 hasher: Callable[[str], str]) -> None:
        self.name, self.action, self.counts, self.hasher = cfg.name, cfg.action, counts, hasher
        if cfg.kind == "custom":
            assert cfg.pattern is not None
            self.rx = re.compile(cfg.pattern)
            self.check: Callable[[str], bool] | None = None
            self.group = 1 if self.rx.groups else 0
            self.words = tuple(w.lower() for w in cfg.screen_words)
            self.screen_key = "words:" + "|".join(self.words) if self.words else "always"
        else:
            b = BUILTINS[cfg.kind]
            self.rx = re.compile(b.pattern, b.flags)
            self.check, self.group = b.check, b.group
            self.screen_key, self.words = b.screen, ()
        self.sub = self.rx.sub
        # bound once: ``self.replace`` makes a new method object at every use
        self.repl: Callable[[re.Match[str]], str] = self.replace

    def replace(self, m: re.Match[str]) -> str:
        value = m.group(self.group)
        if self.check is not None and not self.check(value):
            return m.group(0)
        self.counts[self.name] = self.counts.get(self.name, 0) + 1
        token = (f"<{self.name}>" if self.action == "redact"
                 else f"<{self.name}#{self.hasher(value)}>")
        if self.group == 0:
            return token
        start, end = m.span(self.group)
        whole = m.group(0)
        base = m.start(0)
        return whole[:start - base] + token + whole[end - base:]

    def apply(self, text: str) -> str:
        return self.sub(self.repl, text)


# Steps of rules sharing a screen, each with its bit: a built-in screen's
# (``screen_mask``), or one given to a custom rule's words, or ALWAYS.
Plan = list[tuple[int, list[_Rule]]]
# custom rules without screen words: their regex runs on every text
ALWAYS = 1 << len(SCREEN_BITS)


class Redactor:
    """Applies a ``PrivacyConfig`` with hash key ``key``; ``counts`` counts matches by rule."""

    def __init__(self, config: PrivacyConfig, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the privacy hash key must be at least 16 bytes")
        self.config = config
        # matches by rule: a plain dict (a Counter's item assignment is several times slower)
        self._counts: dict[str, int] = {}
        self._blake = hashlib.blake2b(key=key[:64], digest_size=32)  # copied per new value
        self._chars = config.hash_chars
        self._cache: dict[str, str] = {}
        self._masks: dict[bytes, int] = {}  # shape -> screens passed (see _SHAPES_MAX)
        self._plans: dict[str, Plan] = {}
        rules = [(_Rule(cfg, self._counts, self.hash), cfg) for cfg in config.rules]
        bits = dict(SCREEN_BITS, always=ALWAYS)
        for r, _ in rules:  # one more bit per distinct set of custom screen words
            bits.setdefault(r.screen_key, 1 << len(bits))  # bits 0-7 built in, 8 ALWAYS
        # per target: the bits always set
        self._fixed: dict[str, int] = {}
        for target in ("message", "attrs", "user.action", "user.id", "user.ip"):
            mine = [r for r, cfg in rules if target in cfg.fields]
            self._plans[target] = self._plan(mine, bits)
            self._fixed[target] = ALWAYS if any(r.screen_key == "always" for r in mine) else 0
        # (bit, words) of the custom word screens, all targets' (a text's mask is kept by
        # shape, whatever its target). A word's digits are made 0 and it is looked for in
        # the text's digits made 0: a looser screen (the regex decides), but one the shape
        # decides.
        self._words = sorted({(bits[r.screen_key], tuple(w.translate(_ZERO_DIGITS)
                                                         for w in r.words))
                              for r, _ in rules if r.words})
        self._digit_words = any(w != w.translate(_ZERO_DIGITS)
                                for r, _ in rules for w in r.words)
        self._user_id, self._user_ip = config.user.id, config.user.ip
        self._attrs = bool(self._plans["attrs"])
        self._action = bool(self._plans["user.action"])

    @staticmethod
    def _plan(rules: list[_Rule], bits: dict[str, int]) -> Plan:
        """Rules in file order (which decides overlaps: an IP is not a phone number when the
        ipv4 rule comes first), neighbours with the same screen in one step."""
        plan: Plan = []
        last = None
        for r in rules:
            if r.screen_key != last:
                plan.append((bits[r.screen_key], []))
                last = r.screen_key
            plan[-1][1].append(r)
        return plan

    @property
    def counts(self) -> Counter[str]:
        """Matches by rule (and ``user.id`` / ``user.ip`` values replaced) since start."""
        return Counter(self._counts)

    def hash(self, value: str) -> str:
        """The keyed hash of ``value`` (hex, ``hash_chars`` long), cached."""
        got = self._cache.get(value)
        if got is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            h = self._blake.copy()  # the keyed state, without hashing the key block again
            h.update(value.encode())
            got = h.hexdigest()[:self._chars]
            self._cache[value] = got
        return got

    def text(self, text: str, target: str = "message") -> str:
        """``text`` with every match of the rules for ``target`` replaced."""
        plan = self._plans[target]
        if not plan:
            return text
        if len(text) > _SHAPE_MAX_CHARS:
            m = self._screen(text)
        else:
            shape = text.encode("utf-8", "surrogateescape").translate(_SHAPE)
            got = self._masks.get(shape)
            if got is None:
                if len(self._masks) >= _SHAPES_MAX:
                    self._masks.clear()  # cheap bound; common shapes come back at once
                got = self._masks[shape] = self._screen(text)
            m = got
        m |= self._fixed[target]
        if not m:  # most lines: no screen passed, no regex runs
            return text
        for bit, rules in plan:
            if m & bit:
                for r in rules:
                    text = r.sub(r.repl, text)
        return text

    def _screen(self, text: str) -> int:
        """The screens ``text`` passes, built-in and custom words, as bits."""
        low = text.lower()
        m = screen_mask(text, low)
        if self._words:
            if self._digit_words:
                low = low.translate(_ZERO_DIGITS)
            for bit, words in self._words:
                for w in words:
                    if w in low:
                        m |= bit
                        break
        return m

    def event(self, e: dict[str, Any]) -> None:
        """Redact a normalised log event in place: message, user fields, attrs."""
        msg = e["message"]
        out = self.text(msg)
        if out is not msg:
            e["message"] = out
        u = e.get("user")
        if u:
            self._user(u)
        if self._attrs:
            attrs = e.get("attrs")
            if attrs:
                self._walk(attrs)

    def _user(self, u: dict[str, Any]) -> None:
        uid, ip = u.get("id"), u.get("ip")
        if uid and self._user_id != "keep":
            self._counts["user.id"] = self._counts.get("user.id", 0) + 1
            u["id"] = self.hash(uid) if self._user_id == "hash" else "<user.id>"
        if ip and self._user_ip != "keep":
            self._counts["user.ip"] = self._counts.get("user.ip", 0) + 1
            u["ip"] = self.hash(ip) if self._user_ip == "hash" else "<user.ip>"
        action = u.get("action")
        if action and self._action:
            u["action"] = self.text(action, "user.action")

    def _walk(self, d: dict[str, Any] | list[Any]) -> None:
        """Redact the strings of ``attrs`` at any depth, in place."""
        keys: Any = d.keys() if isinstance(d, dict) else range(len(d))
        for k in list(keys):
            v = d[k]
            if type(v) is str:
                new = self.text(v, "attrs")
                if new is not v:
                    d[k] = new
            elif isinstance(v, dict | list):
                self._walk(v)

    def raw(self, raw: bytes) -> bytes:
        """Bytes of a message that failed validation (a dead letter), redacted as text:
        the bytes that are not UTF-8 pass through unchanged."""
        text = raw.decode("utf-8", "surrogateescape")
        out = self.text(self.text(text, "message"), "attrs")
        return raw if out == text else out.encode("utf-8", "surrogateescape")



def open_redactor(s: PrivacySettings, data_dir: Path) -> Redactor | None:
    """The worker's redactor (None when ``LOGWARDEN_PRIVACY_ENABLED=false``); a rule file
    that does not validate raises ConfigError naming file, line and field."""
    if not s.enabled:
        return None
    return Redactor(load_privacy(s.config_file), hash_key(s, data_dir))
