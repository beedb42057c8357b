"""A documented subset of the Sigma rule format, read into matchers over auth events.

Sigma (https://sigmahq.io) is the common format of detection rules. pySigma, its reference
library, converts rules into backend queries (Splunk, Elastic, ...) and does not evaluate
them on events, so this module parses the subset logwarden evaluates itself:

- ``logsource``: ``category: authentication`` (or ``product: logwarden``); others refused;
- ``detection``: named selections, each a map (fields AND-ed) or a list of maps (OR-ed);
  a list of values is OR-ed (AND with the ``|all`` modifier); modifiers ``contains``,
  ``startswith``, ``endswith``, ``re``, ``cidr``, ``all``; ``*`` and ``?`` wildcards;
  values compare case-insensitively (``re`` as written); ``null`` matches an empty field;
- ``condition``: selection names with ``and``, ``or``, ``not``, parentheses,
  ``1 of sel*``, ``all of sel*``, ``1 of them``, ``all of them``; then optionally the
  aggregation ``| count() [by f1, f2] op N`` or ``| count(field) [by ...] op N`` (distinct
  values of ``field``), over ``timeframe`` (``30s``, ``5m``, ``1h``, ``1d``);
- ``level``: critical, high, medium (-> warning), low / informational (-> info).

Fields are those of ``schemas/auth_events.py`` (user, ip, action, outcome, kind, result,
status, route, service, message), with the usual Sigma names as aliases
(``src_ip``/``SourceIp`` -> ip, ``TargetUserName``/``user.name`` -> user, ...).

>>> m = selection_matcher({"kind": "login", "ip|cidr": "10.0.0.0/8"})
>>> m({"kind": "LOGIN", "ip": "10.1.2.3"}), m({"kind": "login", "ip": "192.168.0.1"})
(True, False)
>>> c = parse_condition("sel and not filter", {"sel": m, "filter": selection_matcher(
...     {"user": "svc-*"})})
>>> c({"kind": "login", "ip": "10.0.0.1", "user": "svc-backup"})
False
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

Event = Mapping[str, Any]
Matcher = Callable[[Event], bool]

FIELDS = ("user", "ip", "action", "outcome", "kind", "result", "status", "route", "service",
          "message")
ALIASES = {
    "src_ip": "ip", "sourceip": "ip", "source.ip": "ip", "client_ip": "ip", "ipaddress": "ip",
    "ipaddr": "ip", "c-ip": "ip", "targetusername": "user", "user.name": "user",
    "username": "user", "user_name": "user", "userid": "user", "user_id": "user",
    "event.outcome": "result", "event.action": "action", "http.status": "status",
    "status_code": "status", "sc-status": "status", "url.path": "route",
}
MODIFIERS = frozenset(("contains", "startswith", "endswith", "re", "cidr", "all"))
LEVELS = {"critical": "critical", "high": "high", "medium": "warning", "low": "info",
          "informational": "info"}


class SigmaError(ValueError):
    """A Sigma rule outside the supported subset, with the part that is wrong."""


def field_name(name: str) -> str:
    """Our field for a Sigma field name (aliases resolved); SigmaError if unknown."""
    f = ALIASES.get(name.lower(), name.lower())
    if f not in FIELDS:
        raise SigmaError(f"unknown field {name!r} (fields: {', '.join(FIELDS)})")
    return f


def _value_matcher(value: Any, mods: list[str]) -> Callable[[str], bool]:
    if value is None:
        return lambda s: s == ""
    text = str(value).lower()
    if "re" in mods:
        try:
            pattern = re.compile(str(value))
        except re.error as e:
            raise SigmaError(f"bad regular expression {value!r}: {e}") from None
        return lambda s: pattern.search(s) is not None
    if "cidr" in mods:
        try:
            net = ipaddress.ip_network(str(value), strict=False)
        except ValueError as e:
            raise SigmaError(f"bad cidr {value!r}: {e}") from None

        def in_net(s: str) -> bool:
            try:
                return ipaddress.ip_address(s) in net
            except ValueError:
                return False
        return in_net
    if "contains" in mods:
        text = f"*{text}*"
    elif "startswith" in mods:
        text = f"{text}*"
    elif "endswith" in mods:
        text = f"*{text}"
    if "*" in text or "?" in text:
        pattern = re.compile(fnmatch.translate(text), re.S)
        return lambda s: pattern.match(s.lower()) is not None
    return lambda s: s.lower() == text


def _field_matcher(key: str, values: Any) -> Matcher:
    name, *mods = key.split("|")
    unknown = [m for m in mods if m not in MODIFIERS]
    if unknown:
        raise SigmaError(f"unsupported modifier(s) {unknown} on {name!r} "
                         f"(supported: {', '.join(sorted(MODIFIERS))})")
    f = field_name(name)
    vals = values if isinstance(values, list) else [values]
    if not vals:
        raise SigmaError(f"empty value list for {key!r}")
    tests = [_value_matcher(v, mods) for v in vals]
    every = "all" in mods

    def match(e: Event) -> bool:
        s = str(e.get(f, "") or "")
        return all(t(s) for t in tests) if every else any(t(s) for t in tests)
    return match


def selection_matcher(sel: Any) -> Matcher:
    """A Sigma selection: a map (AND), a list of maps (OR) or a list of keywords (message)."""
    if isinstance(sel, Mapping):
        parts = [_field_matcher(str(k), v) for k, v in sel.items()]
        return lambda e: all(p(e) for p in parts)
    if isinstance(sel, list) and sel and all(isinstance(x, Mapping) for x in sel):
        alts = [selection_matcher(x) for x in sel]
        return lambda e: any(a(e) for a in alts)
    if isinstance(sel, list) and sel and all(isinstance(x, str | int) for x in sel):
        words = [_value_matcher(f"*{x}*", []) for x in sel]
        return lambda e: any(w(str(e.get("message", ""))) for w in words)
    raise SigmaError(f"a selection is a map, a list of maps or a list of keywords: {sel!r}")


_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z_][A-Za-z0-9_*]*|\S+)")


def parse_condition(text: str, selections: Mapping[str, Matcher]) -> Matcher:
    """A Sigma condition (without aggregation) over named selections, as one matcher."""
    tokens: list[str] = [str(t) for t in _TOKEN.findall(text) if t]
    pos = 0

    def peek() -> str:
        return tokens[pos].lower() if pos < len(tokens) else ""

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise SigmaError(f"condition {text!r} ends early")
        pos += 1
        return tokens[pos - 1]

    def names(pattern: str) -> list[Matcher]:
        keys = list(selections) if pattern == "them" else \
            [k for k in selections if fnmatch.fnmatchcase(k, pattern)]
        if not keys:
            raise SigmaError(f"condition {text!r}: no selection matches {pattern!r}")
        return [selections[k] for k in keys]

    def atom() -> Matcher:
        tok = take()
        low = tok.lower()
        if low == "not":
            inner = atom()
            return lambda e: not inner(e)
        if tok == "(":
            inner = expr()
            if take() != ")":
                raise SigmaError(f"condition {text!r}: missing ')'")
            return inner
        if low in ("1", "all") and peek() == "of":
            take()
            group = names(take())
            if low == "1":
                return lambda e: any(m(e) for m in group)
            return lambda e: all(m(e) for m in group)
        if tok not in selections:
            raise SigmaError(f"condition {text!r}: unknown selection {tok!r}")
        return selections[tok]

    def conj() -> Matcher:
        left = atom()
        while peek() == "and":
            take()
            right, prev = atom(), left
            left = (lambda a, b: lambda e: a(e) and b(e))(prev, right)
        return left

    def expr() -> Matcher:
        left = conj()
        while peek() == "or":
            take()
            right, prev = conj(), left
            left = (lambda a, b: lambda e: a(e) or b(e))(prev, right)
        return left

    result = expr()
    if pos != len(tokens):
        raise SigmaError(f"condition {text!r}: unexpected {tokens[pos]!r}")
    return result


_AGG = re.compile(r"^count\(\s*([\w.\-]*)\s*\)\s*(?:by\s+([\w.\-]+(?:\s*,\s*[\w.\-]+)*))?\s*"
                  r"(>=|>|==|=)\s*(\d+)\s*$", re.I)


def parse_aggregation(text: str) -> tuple[str, list[str], int]:
    """``count(field) by a, b > N`` -> (distinct field or '', group fields, minimum count)."""
    m = _AGG.match(text.strip())
    if m is None:
        raise SigmaError(f"aggregation {text!r}: only 'count([field]) [by f, ...] >|>=|= N' "
                         "is supported")
    distinct = field_name(m.group(1)) if m.group(1) else ""
    by = [field_name(b.strip()) for b in (m.group(2) or "").split(",") if b.strip()]
    n = int(m.group(4))
    return distinct, by, n + 1 if m.group(3) == ">" else n


_TIMEFRAME = re.compile(r"^(\d+)([smhd])$")


def parse_timeframe(text: str) -> float:
    """Sigma's ``timeframe`` (``30s``, ``5m``, ``1h``, ``1d``) in seconds."""
    m = _TIMEFRAME.match(str(text).strip())
    if m is None:
        raise SigmaError(f"timeframe {text!r}: use a number and s, m, h or d")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
