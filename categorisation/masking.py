"""Masking of variable parts of a log message before template mining.

Variables (numbers, ids, addresses, paths, ...) are replaced by ``<*>`` so that lines of one
kind look alike to the miner. Masking works token by token (tokens are whitespace-separated)
with a bounded cache of token -> masked token: most tokens of a log stream are constant words
that repeat, so the regexes run only on the first sight of a token. Only quoted strings
and timestamps, which may hold spaces, are masked on the whole line first. Tokens and lines
holding digits are also remembered by their shape (digits 1-9 alike), so "took 12ms" and
"took 47ms" cost one lookup (`Masker.mask_line`, what the miner calls).

>>> m = Masker(MaskingConfig())
>>> m.mask_tokens("Accepted password for root from 10.0.0.7:22 in 12ms")
['Accepted', 'password', 'for', 'root', 'from', '<*>', 'in', '<*>']
>>> m.mask_tokens("open '/var/log/my file.txt' uid=1000 status=ok")
['open', "'<*>'", 'uid=<*>', 'status=ok']
"""

from __future__ import annotations

import re
from collections.abc import Callable

from categorisation.config import WILDCARD as WILDCARD
from categorisation.config import MaskingConfig

# Patterns work on one token (no whitespace inside) unless noted.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])")
# IPv6: at least two colons between hex groups; :: compression allowed; optional [..]:port.
_IPV6 = re.compile(
    r"(?<![\w:.])\[?(?:[0-9a-fA-F]{0,4}:){2,7}(?:[0-9a-fA-F]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
    r"\]?(?::\d{1,5})?(?![\w:])"
)
_PATH = re.compile(r"(?<![\w/<>*])(?:[A-Za-z]:\\|~?\.{0,2}/)[\w.@%+~=-]+(?:[/\\][\w.@%+~=-]*)*")
_DURATION = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?(?:ns|us|µs|ms|s|sec|secs|m|min|mins|h|hr|hrs|d)(?!\w)"
)
_HEX = re.compile(
    r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"
)
_KEY_VALUE = re.compile(r"(?<=[\w.-]=)(?!<\*>)[^\s,;&)\]}>\"']+")
# Words holding a digit, glued by _ . - , + (ids, versions, numbers, 1.5e3, 0x1f).
# A word of letters ending in one digit (ssh2, md5, ext3) names a thing and is kept.
_NUMBER = re.compile(r"(?<![\w+-])(?![A-Za-z]{2,}\d(?![\w.,+-]))[\w+-]*\d[\w.,+-]*(?<![.,+-])")
# Whole timestamps, which span tokens: "Sun Jul 24 02:38:25 2005", "2015-10-18 18:01:47,978".
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
_DATE = re.compile(
    rf"\b(?:{_DAY}\s+)?(?:{_MONTH}\s+\d{{1,2}}|\d{{1,2}}\s+{_MONTH})(?:\s+\d{{4}})?\s+{_CLOCK}"
    rf"(?:\s+\d{{4}}\b)?"
    rf"|\b\d{{4}}[-/]\d{{2}}[-/]\d{{2}}(?:[T ]{_CLOCK})?(?:Z|[+-]\d{{2}}:?\d{{2}})?"
)
# The keyed hash a redaction rule leaves (privacy.redact: ``<email#9f2c0a17e4b3d855>``): a
# variable by construction. Masked on the whole line before anything else, so lines that
# differ only in the hashes they hold share a shape (`Masker.mask_line`) and cache entries.
_HASH_CHARS = "0123456789abcdef"
_NAME_END = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def mask_hashes(text: str) -> str:
    """``text`` with the hex of each redaction hash masked (``<email#<*>>``): ``#``, 8-64
    lower-case hex digits and ``>``, after a rule name's last character. String methods, not
    a regex: about half the time on the lines that hold one.

    >>> mask_hashes("to <email#9f2c0a17e4b3d855> at #12 <b#deadbeefcafe0>")
    'to <email#<*>> at #12 <b#<*>>'
    """
    i = text.find("#")
    if i < 0:
        return text
    parts: list[str] = []
    start = 0
    while i >= 0:
        end = text.find(">", i + 9)
        if end < 0:  # no ">" left: no later "#" can end a hash either
            break
        if (end - i > 65 or i == 0 or text[i - 1] not in _NAME_END
                or text[i + 1:end].strip(_HASH_CHARS)):
            i = text.find("#", i + 1)
            continue
        parts.append(text[start:i + 1])
        parts.append(WILDCARD)
        start = end
        i = text.find("#", end)
    if not parts:
        return text
    parts.append(text[start:])
    return "".join(parts)

_MERGE = re.compile(r"(?:<\*>)+")
_QUOTED = re.compile(r"(?<!\w)(?:'[^'\s][^']{0,200}'|\"[^\"\s][^\"]{0,200}\")(?!\w)")
_QUOTED_SUB = ("'<*>'", '"<*>"')


# What a string must hold for a built-in rule to match in it ("" = a digit). Built-in rules
# only ever replace text by WILDCARD, which holds none of these, so a rule whose need is
# absent can be skipped without changing the result (the fuzz test in test_masking checks).
_DIGIT_NEED = ""
_NEEDS: dict[re.Pattern[str], tuple[str, ...]] = {
    _URL: ("://",), _EMAIL: ("@",), _UUID: ("-",), _IPV4: (".",), _IPV6: (":",),
    _PATH: ("/", "\\"), _KEY_VALUE: ("=",), _DURATION: (_DIGIT_NEED,), _HEX: (_DIGIT_NEED,),
    _NUMBER: (_DIGIT_NEED,),
}
_DIGIT = re.compile(r"\d")
# The shape of a token: ASCII digits 1-9 made "1" ("0" is literal in the hex rule). No
# built-in rule tells 1-9 apart (\d, \w and classes hold all of them), so tokens of one shape
# match at the same places; if a masked token keeps no 1-9 digit, its whole shape masks alike.
_SHAPE = bytes.maketrans(b"23456789", b"11111111")  # on UTF-8: ~4x faster than str
_KEEPS_DIGIT = re.compile(r"[1-9]")


def _rules(cfg: MaskingConfig) -> list[tuple[re.Pattern[str], str]]:
    """The ordered token-level substitutions a config asks for."""
    rules = [(re.compile(r.pattern), r.replacement) for r in cfg.extra]
    rules += [(rx, WILDCARD) for rx in _builtin(cfg)]
    return rules


def _builtin(cfg: MaskingConfig) -> list[re.Pattern[str]]:
    """The built-in rules a config asks for, in the order they apply (after the extra ones)."""
    wanted = [
        (cfg.urls, _URL),
        (cfg.emails, _EMAIL),
        (cfg.uuids, _UUID),
        (cfg.ips, _IPV4),
        (cfg.ips, _IPV6),
        (cfg.paths, _PATH),
        (cfg.key_values, _KEY_VALUE),
        (cfg.durations, _DURATION),
        (cfg.hex, _HEX),
        (cfg.numbers, _NUMBER),
    ]
    return [rx for on, rx in wanted if on]


class Masker:
    """Masks the variables of a message per a `MaskingConfig`; keeps a bounded token cache."""

    def __init__(self, config: MaskingConfig, cache_size: int = 50_000) -> None:
        self.config = config
        self._rules = _rules(config)  # the reference chain: every rule on every token
        self._extra = [(re.compile(r.pattern), r.replacement) for r in config.extra]
        self._builtin = [(rx, _NEEDS[rx]) for rx in _builtin(config)]
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size
        self._quoted = config.quoted
        self._dates = config.dates
        # Both shortcuts hold for the built-in rules only (extra rules may name digits).
        # A bare ASCII number is what the number rule makes WILDCARD (no other rule can match).
        self._digits_ok = not config.extra and config.numbers
        # shape -> masked token, for shapes that mask alike (user=1234 and user=5678 -> user=<*>)
        self._shapes: dict[bytes, str] | None = None if config.extra else {}
        # The same one level up: line shape -> masked tokens. A line's tokens split at the
        # same places as its shape's, and the whole-line rules (dates, quotes) cannot tell
        # 1-9 apart either, so lines of one shape mask alike when the result keeps no 1-9.
        self._lines: dict[bytes, tuple[str, ...]] | None = None if config.extra else {}
        self._lines_size = max(1, cache_size // 10)
        self._exact: dict[str, tuple[str, ...]] = {}  # line -> masked tokens, for the rest

    def mask_token(self, token: str) -> str:
        """The masked form of one whitespace-free token."""
        out = self._cache.get(token)
        return out if out is not None else self._mask_uncached(token)

    def _mask_uncached(self, token: str) -> str:
        """`mask_token` for a token not in the cache (it goes in unless its shape answers)."""
        shapes = self._shapes
        if self._digits_ok and token.isdigit() and token.isascii():
            return WILDCARD
        if shapes is None:
            out = self._apply(token)
        else:
            raw = token.encode("utf-8", "surrogatepass")  # digits stay single bytes
            shape = raw.translate(_SHAPE)
            known = shapes.get(shape)
            if known is not None:
                if shape != raw:  # a variable: its shape answers, no entry of its own
                    return known
                out = known
            else:
                out = self._apply(token)
                if _KEEPS_DIGIT.search(out) is None:
                    if len(shapes) >= self._cache_size:
                        shapes.clear()
                    shapes[shape] = out
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # cheap bound; hot tokens come back at once
        self._cache[token] = out
        return out

    def _apply(self, token: str) -> str:
        """The rule chain on one token, skipping the built-in rules that cannot match."""
        out = token
        for rx, rep in self._extra:
            out = rx.sub(rep, out)
        digit = _DIGIT.search(out) is not None
        for rx, needs in self._builtin:
            for need in needs:
                if need in out if need else digit:
                    out = rx.sub(WILDCARD, out)
                    break
        if WILDCARD in out:
            out = _MERGE.sub(WILDCARD, out)
        return out

    def mask_token_slow(self, token: str) -> str:
        """`mask_token` by the plain chain, uncached (the reference the fast path must equal)."""
        out = token
        for rx, rep in self._rules:
            out = rx.sub(rep, out)
        return _MERGE.sub(WILDCARD, out) if WILDCARD in out else out

    def mask_tokens(self, content: str) -> list[str]:
        """Cut, split on whitespace and mask ``content``; at most ``max_tokens`` tokens."""
        cfg = self.config
        if len(content) > cfg.max_line_chars:
            content = content[: cfg.max_line_chars]
        if not content.isascii():  # lone surrogates would break hashing and JSON later
            content = content.encode("utf-8", "replace").decode("utf-8")
        content = mask_hashes(content)
        if self._dates and ":" in content:
            content = _DATE.sub(WILDCARD, content)
        if self._quoted and ("'" in content or '"' in content):
            content = _QUOTED.sub(_quote_sub, content)
        tokens = content.split(None, cfg.max_tokens)
        if len(tokens) > cfg.max_tokens:
            del tokens[cfg.max_tokens:]  # the unsplit rest
        get: Callable[[str], str | None] = self._cache.get
        uncached = self._mask_uncached
        return [get(t) or uncached(t) for t in tokens]

    def mask_line(self, content: str) -> tuple[str, ...]:
        """`mask_tokens` as a tuple, answered by the line's shape when one was seen before
        ("GET /items/42 took 7ms" and "GET /items/57 took 9ms"): one translate and one
        lookup instead of a lookup per token."""
        lines = self._lines
        if lines is None or len(content) > self.config.max_line_chars or not content.isascii():
            return tuple(self.mask_tokens(content))
        content = mask_hashes(content)
        shape = content.encode().translate(_SHAPE)
        out = lines.get(shape)
        if out is None:
            exact = self._exact
            out = exact.get(content)
            if out is None:
                out = tuple(self.mask_tokens(content))
                if _KEEPS_DIGIT.search(" ".join(out)) is None:
                    if len(lines) >= self._lines_size:
                        lines.clear()  # cheap bound; hot shapes come back at once
                    lines[shape] = out
                else:  # a kept digit (ssh2, <ipv4#<*>>): only the same line masks alike
                    if len(exact) >= self._lines_size:
                        exact.clear()
                    exact[content] = out
        return out

    def mask(self, content: str) -> str:
        """The masked message, tokens joined by single spaces."""
        return " ".join(self.mask_tokens(content))


def _quote_sub(m: re.Match[str]) -> str:
    return _QUOTED_SUB[0] if m.group(0)[0] == "'" else _QUOTED_SUB[1]
