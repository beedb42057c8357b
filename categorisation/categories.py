"""Rule-based categories of log templates: what kind of trouble a message is about.

A template is categorised once (results are cached by template text), not once per line.
The text is normalised first: ``<*>`` dropped, camelCase and snake_case split, lower-cased,
punctuation turned into single spaces, so ``SocketTimeoutException``, ``DEADLINE_EXCEEDED``
and ``timed-out`` read ``socket timeout exception``, ``deadline exceeded`` and ``timed out``.
Keywords match whole words of that text (a trailing ``s``/``es`` allowed, a trailing ``*``
matches any word ending); ``patterns`` are regexes on the template text, case-insensitive.
Rules are tried in order, first match wins: new categories of the config, then built-ins
from the most specific (security) to the most generic (exception). A template no rule
matches falls back to the line's signals (HTTP status, peer.ok, user.outcome), else unknown.

Priority is P1 (page now) .. P4: the higher of what the level says (FATAL/CRITICAL P1, ERROR
P2, WARN P3, else P4) and the category's floor. Only trouble that is bad whatever the level
has a floor: security, resource exhaustion, data integrity P2; authentication, authorisation,
exception P3. So an INFO "disk full" is P2, an INFO "connection reset" stays P4.

>>> c = Categoriser()
>>> c.categorise("Connection to <*> timed out after <*>", "WARN")
Categorised(category='timeout', priority='P3')
>>> c.categorise("write failed: No space left on device", "INFO")
Categorised(category='resource_exhaustion', priority='P2')
>>> c.categorise("GET <*> completed", "INFO", http_status=401)
Categorised(category='authentication', priority='P3')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from categorisation.masking import WILDCARD
from schemas.common import Regex
from schemas.errors import ConfigError, yaml_line_of

Priority = Literal["P1", "P2", "P3", "P4"]
PRIORITIES: tuple[Priority, ...] = ("P1", "P2", "P3", "P4")
UNKNOWN = "unknown"
LEVEL_PRIORITY = {"FATAL": 1, "CRITICAL": 1, "ERROR": 2, "WARN": 3, "WARNING": 3, "INFO": 4}
M = TypeVar("M", bound=BaseModel)


class CategoryRule(BaseModel):
    """One category: the words and regexes that reveal it, and its least priority."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    keywords: list[str] = Field(default_factory=list)
    patterns: list[Regex] = Field(default_factory=list)
    priority: Priority | None = None  # None: keep the built-in one (P4 for a new category)
    replace: bool = False  # for a built-in name: drop its keywords instead of extending them



class CategoriesConfig(BaseModel):
    """The ``categories.yaml`` file: rules that extend or override the built-ins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    categories: list[CategoryRule] = Field(default_factory=list)


def _rule(name: str, priority: Priority, *keywords: str) -> CategoryRule:  # a built-in
    return CategoryRule(name=name, priority=priority, keywords=list(keywords))


BUILTIN_RULES: tuple[CategoryRule, ...] = (
    _rule("security", "P2", "sql injection", "xss", "csrf", "brute force", "malicious",
          "intrusion", "suspicious", "attack", "exploit", "blocked ip", "blacklisted",
          "denylisted", "tampered", "signature mismatch", "invalid signature",
          "privilege escalation",
          "path traversal", "rate limit exceeded for ip", "account locked",
          "break in attempt"),
    _rule("resource_exhaustion", "P2", "out of memory", "oom", "oom killed", "oomkilled",
          "no space left", "disk full", "disk is full", "quota exceeded", "enospc", "emfile",
          "too many open files", "memory limit", "heap space", "resource exhausted",
          "resource temporarily unavailable", "pool exhausted", "thread pool full",
          "queue full", "rate limited", "too many requests", "throttled", "cannot allocate"),
    _rule("data_integrity", "P2", "checksum mismatch", "checksum failed", "corrupt*",
          "data loss", "duplicate key", "constraint violation", "integrity error",
          "inconsistent state", "data inconsistency", "unique constraint", "foreign key",
          "deserialization failed", "crc error"),
    _rule("authentication", "P3", "authentication failed", "authentication failure",
          "login failed", "failed login", "failed password", "invalid password",
          "bad credentials", "invalid credentials", "invalid token", "token expired",
          "expired token", "unauthorized", "unauthorised", "unauthenticated",
          "not authenticated", "invalid api key", "wrong password", "authentication error"),
    _rule("authorisation", "P3", "permission denied", "access denied", "forbidden",
          "not authorized", "not authorised", "not permitted", "insufficient permissions",
          "insufficient privileges", "operation not permitted", "eacces", "eperm",
          "authorization failed", "authorisation failed", "policy denied"),
    _rule("timeout", "P4", "timeout", "timed out", "time out", "deadline exceeded",
          "etimedout", "took too long", "read timeout", "gateway timeout",
          "context deadline exceeded"),
    _rule("connection", "P4", "connection refused", "connection reset", "connection dropped",
          "connection aborted", "connection lost", "connection failed", "connect failed",
          "could not connect", "can t connect", "cannot connect", "unable to connect",
          "failed to connect", "econnrefused", "econnreset", "epipe", "broken pipe",
          "no route to host", "name resolution",
          "unknown host", "dns", "ssl handshake", "tls handshake", "socket hang up",
          "unreachable", "certificate verify failed", "certificate expired",
          "connect exception", "ehostunreach", "enetunreach"),
    _rule("dependency_failure", "P4", "upstream error", "upstream connect error",
          "no healthy upstream", "upstream unavailable", "bad gateway", "service unavailable",
          "circuit breaker open", "circuit open", "dependency failed", "dependency unavailable",
          "downstream error", "downstream failed", "retries exhausted",
          "max retries", "failed after retries", "backend unavailable", "remote error"),
    _rule("configuration", "P4", "config", "configuration", "misconfigured",
          "missing setting", "missing environment variable", "env var", "invalid setting",
          "unknown option", "no such option", "property not set", "feature flag"),
    _rule("validation", "P4", "validation", "invalid request", "invalid input",
          "bad request", "malformed", "missing required", "required field",
          "must be", "unprocessable", "schema violation", "invalid format",
          "invalid argument", "parse error", "failed to parse"),
    _rule("performance", "P4", "slow", "slow query", "took longer", "high latency",
          "latency above", "degraded", "backpressure", "lagging", "behind by", "gc pause",
          "long gc", "stall*", "lag", "consumer lag"),
    _rule("exception", "P3", "exception", "traceback", "stack trace", "stacktrace",
          "panic", "panicked", "segfault", "segmentation fault", "core dumped", "crash*",
          "fatal error", "unhandled", "uncaught", "assertion failed", "nullpointer",
          "null pointer", "nil pointer", "key error", "index error", "type error",
          "attribute error", "undefined is not"),
)
BUILTIN_PRIORITY: dict[str, Priority] = {r.name: r.priority or "P4" for r in BUILTIN_RULES}
BUILTIN_PRIORITY[UNKNOWN] = "P4"

# Line signals, used when the template text says nothing.
HTTP_STATUS_CATEGORY: dict[int, str] = {
    401: "authentication", 407: "authentication", 403: "authorisation", 408: "timeout",
    504: "timeout", 429: "resource_exhaustion", 507: "resource_exhaustion", 500: "exception",
    502: "dependency_failure", 503: "dependency_failure", **dict.fromkeys(
        (400, 413, 415, 422), "validation")}
_DENIED = frozenset({"denied", "forbidden", "unauthorized", "unauthorised", "not_allowed"})
_FAILED = frozenset({"failure", "failed", "fail", "error", "rejected", "invalid", "blocked"})

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")


def normalise(text: str) -> str:
    """Template text as lower-case words separated by single spaces (see module doc)."""
    text = text.replace(WILDCARD, " ")
    return _NON_WORD.sub(" ", _CAMEL.sub(" ", text)).strip().lower()


def _keyword_regex(keywords: Sequence[str]) -> str:
    parts = []
    for kw in keywords:
        prefix = kw.rstrip().endswith("*")
        words = normalise(kw.rstrip().rstrip("*"))
        if words:
            parts.append(re.escape(words) + (r"[a-z0-9]*" if prefix else r"(?:e?s)?"))
    return r"(?<![a-z0-9])(?:" + "|".join(parts) + r")(?![a-z0-9])" if parts else ""


class Categorised(NamedTuple):
    """A category and the priority it gets at one level."""

    category: str
    priority: Priority


def merge_rules(config: CategoriesConfig | None) -> list[CategoryRule]:
    """Built-in rules with a config applied: new categories first, built-ins extended."""
    by_name = {r.name: r for r in BUILTIN_RULES}
    new: list[CategoryRule] = []
    for r in config.categories if config else []:
        base = by_name.get(r.name)
        if base is None:
            new.append(r)
            continue
        by_name[r.name] = CategoryRule(
            name=r.name, priority=r.priority or base.priority,
            keywords=r.keywords if r.replace else [*base.keywords, *r.keywords],
            patterns=r.patterns if r.replace else [*base.patterns, *r.patterns])
    return [*new, *by_name.values()]


class Categoriser:
    """Categorises templates by rules (cached per template text) and lines by signals."""

    def __init__(self, config: CategoriesConfig | None = None, cache_size: int = 100_000) -> None:
        rules = merge_rules(config)
        self._rules: list[tuple[str, re.Pattern[str] | None, re.Pattern[str] | None]] = []
        for r in rules:
            kw = _keyword_regex(r.keywords)
            rx = "|".join(f"(?:{p})" for p in r.patterns)
            self._rules.append((r.name, re.compile(kw) if kw else None,
                                re.compile(rx, re.IGNORECASE) if rx else None))
        self.priorities: dict[str, Priority] = dict(BUILTIN_PRIORITY)
        self.priorities.update({r.name: r.priority or "P4" for r in rules})
        self._cache: dict[str, str | None] = {}
        self._cache_size = cache_size
        self._prio: dict[tuple[str, str], Priority] = {}  # few categories x levels

    @property
    def categories(self) -> list[str]:
        """Every category name rules can give, in rule order, ``unknown`` last."""
        return [*(name for name, _, _ in self._rules), UNKNOWN]

    def text_category(self, template: str) -> str | None:
        """The category the template text reveals, or None; cached per template."""
        if template in self._cache:
            return self._cache[template]
        words = normalise(template)
        found = next((name for name, kw, rx in self._rules
                      if (kw is not None and kw.search(words))
                      or (rx is not None and rx.search(template))), None)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # cheap bound; hot templates come back at once
        self._cache[template] = found
        return found

    def categorise(self, template: str, level: str = "INFO", *, http_status: int | None = None,
                   peer_ok: bool | None = None, user_outcome: str | None = None) -> Categorised:
        """Category and priority of one line: its template's text, else its signals."""
        cat = self.text_category(template)
        if cat is None:
            cat = signal_category(http_status, peer_ok, user_outcome) or UNKNOWN
        return Categorised(cat, self.priority(cat, level))

    def priority(self, category: str, level: str) -> Priority:
        """The higher (lower-numbered) of the level's and the category's priority."""
        key = (category, level)
        if key not in self._prio:
            if len(self._prio) >= 10_000:  # categories come from feedback too: bound it
                self._prio.clear()
            by_cat = int(self.priorities.get(category, "P4")[1])
            self._prio[key] = PRIORITIES[min(by_cat, LEVEL_PRIORITY.get(level.upper(), 4)) - 1]
        return self._prio[key]


def signal_category(http_status: int | None, peer_ok: bool | None,
                    user_outcome: str | None) -> str | None:
    """The category a line's structured fields reveal, or None."""
    if user_outcome:
        outcome = user_outcome.strip().lower()
        if outcome in _DENIED:
            return "authorisation"
        if outcome in _FAILED:
            return "authentication"
    if http_status in HTTP_STATUS_CATEGORY:
        return HTTP_STATUS_CATEGORY[http_status]
    if peer_ok is False:
        return "dependency_failure"
    return None


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read a YAML file into a model; a bad file raises ConfigError naming file, line, field."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", 0) + 1
        raise ConfigError(f"{path}:{line}: not valid YAML: {getattr(e, 'problem', e)}") from None
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        line = yaml_line_of(node, err["loc"])
        raise ConfigError(f"{path}:{line}: {loc}: {err['msg']}") from None


def load_categories(path: Path) -> CategoriesConfig:
    """Read ``categories.yaml``."""
    return load_yaml_model(path, CategoriesConfig)
