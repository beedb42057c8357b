"""The built-in PII patterns, the Luhn check, and the cheap screens that gate them.

Each rule is a regex plus a *screen*: a test far cheaper than the regex that every line
containing a match passes (``'@' in text`` for e-mail addresses). A line that passes no
screen (most log lines) costs a few string scans and no regex at all; see docs/privacy.md
and ``bench/privacy.py`` for the measured cost.

>>> luhn_ok("4111 1111 1111 1111"), luhn_ok("4111 1111 1111 1112")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Screens, as bits of one mask that ``screen_mask`` computes in a single call per text (a
# call per screen costs more than most screens). A text whose mask is 0 skips every rule.
# The redactor keeps masks by the shape of a text (privacy.redact), so a screen may cost a
# regex search: it runs once per shape, not per line.
AT, IPV4, LONGNUM, CARD, IPV6, BEARER, ASSIGN, TOKEN = 1, 2, 4, 8, 16, 32, 64, 128
SCREEN_BITS = {"at": AT, "ipv4": IPV4, "longnum": LONGNUM, "card_run": CARD, "ipv6": IPV6,
               "bearer_word": BEARER, "assignment": ASSIGN, "token_shape": TOKEN}
_IPV4_HINT = re.compile(r"[0-9]\.[0-9]{1,3}\.[0-9]").search
# 10+ digits with at most two separators between two of them: every phone and card number
# has such a run; "2026-11-05", "took 45ms" and an 8-digit id do not. ASCII classes and a
# possessive quantifier: half the time of \d and a backtracking one.
_LONGNUM = re.compile(r"[0-9](?:[ ().-]{0,2}+[0-9]){9}").search
# 13 digits with at most one space or dash between two: what every card match starts with.
_CARD_RUN = re.compile(r"\d(?:[ -]?+\d){12}").search
_DIGITS = b"0123456789"


# Digits -> "0", the separators _LONGNUM allows -> ".", every other byte -> "x".
_RUNS = bytes([48 if 48 <= c <= 57 else 46 if c in b" ().-" else 120 for c in range(256)])


def _long_run(text: str) -> bool:
    """Whether ``text`` has 10 digits between two bytes that are neither digits nor
    separators: what `_LONGNUM` needs, and far cheaper to rule out on texts with many digits
    spread over hex ids and timestamps (a translate and a split, no regex)."""
    b = text.encode("utf-8", "surrogateescape")  # dead letters may hold stray bytes
    if len(b) - len(b.translate(None, _DIGITS)) < 10:
        return False
    for run in b.translate(_RUNS).split(b"x"):  # noqa: SIM110 (compiled: no generator)
        if len(run) >= 10 and run.count(b"0") >= 10:
            return True
    return False


def screen_mask(text: str, low: str) -> int:
    """The screens ``text`` (``low``: the same, lower-cased) passes, as bits (0: no
    built-in rule can match it)."""
    m = AT if "@" in text else 0
    if "." in text and _IPV4_HINT(text) is not None:
        m |= IPV4
    if _long_run(text) and _LONGNUM(text) is not None:
        m |= LONGNUM
        if _CARD_RUN(text) is not None:
            m |= CARD
    if "::" in text or text.count(":") >= 7:
        m |= IPV6
    if ("key" in low or "secret" in low or "token" in low or "pass" in low or "pwd" in low
            or "auth" in low or "credential" in low):
        if ":" in text or "=" in text:  # what a secret assignment needs
            m |= ASSIGN
        if "bearer" in low or "basic" in low:  # the words of the bearer rule ...
            m |= BEARER
    elif "bearer" in low:  # ... which runs where a secret word is ("basic" alone is not one)
        m |= BEARER
    if ("AKIA" in text or "gh" in text or "xox" in text or "k_live" in text
            or "k_test" in text or "eyJ" in text or "glpat-" in text):
        m |= TOKEN
    return m


def luhn_ok(number: str) -> bool:
    """True if the digits of ``number`` pass the Luhn check (what card numbers satisfy)."""
    digits = [ord(c) - 48 for c in number if "0" <= c <= "9"]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}").search


def _phone_ok(text: str) -> bool:
    """A phone number has 10-15 digits and a + or separators; a bare run of digits (an id)
    and a date are not one."""
    digits = sum(c.isdigit() for c in text)
    if not 10 <= digits <= 15:
        return False
    if text[0] != "+" and not any(c in text for c in " .-()"):
        return False
    return _DATE(text) is None


@dataclass(frozen=True)
class Builtin:
    """A built-in rule kind: its pattern, its screen, and a check of each match."""

    pattern: str
    screen: str
    check: Callable[[str], bool] | None = None
    group: int = 0  # the group replaced (0: the whole match)
    flags: int = 0


_HEX4 = "[0-9A-Fa-f]{1,4}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
BUILTINS: dict[str, Builtin] = {
    "email": Builtin(
        r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b", "at"),
    # Octets 0-255 without leading zeros, in the pattern (a check per match costs more).
    "ipv4": Builtin(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)", "ipv4"),
    # Full and compressed forms (::1, fe80::1, 2001:db8::8a2e:370:7334), not times (10:00:00).
    "ipv6": Builtin(
        rf"(?<![\w:])(?:(?:{_HEX4}:){{7}}{_HEX4}|(?:{_HEX4}:){{1,7}}:(?:{_HEX4}(?::{_HEX4}){{0,6}})?"
        rf"|::(?:{_HEX4}(?::{_HEX4}){{0,6}})?)(?![\w:])", "ipv6",
        lambda t: t.count(":") >= 2 and ("::" in t or t.count(":") == 7)),
    "card": Builtin(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])", "card_run", luhn_ok),
    # Possessive groups (Python 3.11+): no backtracking over digit runs in busy lines.
    "phone": Builtin(
        r"(?<![\w+.:/-])(?:\+|\(\d{1,5}\)[ .-]?)?\d{1,5}+(?:[ .-]?\(?\d{1,8}+\)?){1,5}+"
        r"(?![\w:/]|[.-]\d)", "longnum", _phone_ok),
    "bearer": Builtin(r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9\-._~+/]{8,}=*)", "bearer_word",
                      group=1),
    # key=value and "key": "value" forms whose key names a secret.
    "secret_assignment": Builtin(
        r"(?i)(?:api[_-]?key|secret|passw(?:or)?d|pwd|token|credential|access[_-]?key|"
        r"private[_-]?key|auth\w*)[\w-]*+[\"']?\s*[:=]\s*[\"']?"
        r"(?!(?:bearer|basic)\s)([^\s\"',;&]{4,})", "assignment", group=1),
    # Well-known token shapes: AWS, GitHub, GitLab, Slack, Stripe, JWTs.
    "api_key": Builtin(
        r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
        r"|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|[sr]k_(?:live|test)_"
        r"[A-Za-z0-9]{16,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})\b",
        "token_shape"),
}
