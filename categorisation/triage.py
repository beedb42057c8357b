"""Triage of log lines: category, priority and owning team, corrected by people's feedback.

Work per line is a dict lookup: a template's text category and the correction that applies
to it are found once per template (again only when the template generalises or feedback
arrives). A correction (`Triage.apply_feedback`) overrides the rules for its template and
for *similar* templates of any service: similar means the Jaccard index of their word sets
(``categories.normalise`` words, variables and a few stop words left out) reaches
``similarity`` (0.6 by default). The most similar correction wins, the latest on a tie.

>>> t = Triage(teams=TeamsConfig(default_team="sre", teams={"payments": ["pay-*"]}))
>>> t.triage("pay-api", "t1", "card <*> declined by issuer", "WARN")
Triaged(category='unknown', priority='P3', team='payments', source='rules')
>>> t.apply_feedback("t1", "card <*> declined by issuer", category="validation", priority="P4")
>>> t.triage("pay-web", "t9", "card <*> declined by issuer bank", "WARN")
Triaged(category='validation', priority='P4', team='payments', source='similar')
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from categorisation.categories import (
    PRIORITIES,
    UNKNOWN,
    Categoriser,
    Priority,
    load_yaml_model,
    normalise,
    signal_category,
)
from categorisation.config import TeamsConfig, TriageConfig

Source = Literal["rules", "signals", "feedback", "similar"]
PRIORITY_ALIASES: dict[str, Priority] = {"critical": "P1", "high": "P2", "medium": "P3",
                                         "low": "P4"}
_STOP = frozenset({"a", "an", "the", "of", "to", "for", "from", "in", "on", "at", "by", "with",
                   "and", "or", "is", "was", "be", "as"})
_CATEGORY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SNAPSHOT_VERSION = 1


def load_teams(path: Path) -> TeamsConfig:
    """Read ``teams.yaml``."""
    return load_yaml_model(path, TeamsConfig)


class TeamRouter:
    """Owning team of a service: an exact name first, then globs in file order; cached."""

    def __init__(self, config: TeamsConfig | None = None) -> None:
        self.config = cfg = config or TeamsConfig()
        self._exact: dict[str, str] = {}
        self._globs: list[tuple[str, str]] = []
        for team, patterns in cfg.teams.items():
            for p in patterns:
                if any(ch in p for ch in "*?["):
                    self._globs.append((p, team))
                else:
                    self._exact.setdefault(p, team)
        self._cache: dict[str, str] = {}

    def team_for(self, service: str) -> str:
        """The team that owns ``service``."""
        team = self._cache.get(service)
        if team is None:
            team = self._exact.get(service) or next(
                (t for p, t in self._globs if fnmatch.fnmatchcase(service, p)),
                self.config.default_team)
            if len(self._cache) >= 100_000:
                self._cache.clear()
            self._cache[service] = team
        return team


def parse_priority(value: str) -> Priority:
    """``P1``..``P4`` or critical/high/medium/low, as ``P1``..``P4``."""
    v = value.strip()
    if v.upper() in PRIORITIES:
        return PRIORITIES[PRIORITIES.index(v.upper())]
    if v.lower() in PRIORITY_ALIASES:
        return PRIORITY_ALIASES[v.lower()]
    raise ValueError(f"unknown priority {value!r}: use P1..P4 or critical/high/medium/low")


def words(template: str) -> frozenset[str]:
    """The constant words of a template that similarity compares."""
    return frozenset(w for w in normalise(template).split() if w not in _STOP)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Size of the intersection over size of the union (0 for two empty sets)."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


class Triaged(NamedTuple):  # a tuple: ~2x cheaper to make than a frozen dataclass
    """What one line is about, how urgent it is, who owns it, and why."""

    category: str
    priority: Priority
    team: str
    source: Source  # rules (template text), signals (status/peer/user), feedback, similar


@dataclass(frozen=True, slots=True)
class Correction:
    """A person's correction of one template's category and/or priority."""

    template_id: str
    template: str
    category: str | None
    priority: Priority | None
    seq: int  # order of arrival: the latest wins a tie
    words: frozenset[str]


class Triage:
    """Category, priority and team of each line, learning from corrections."""

    def __init__(self, categoriser: Categoriser | None = None, teams: TeamsConfig | None = None,
                 config: TriageConfig | None = None) -> None:
        self.categoriser = categoriser or Categoriser()
        self.router = TeamRouter(teams)
        self.config = config or TriageConfig()
        self._corrections: dict[str, Correction] = {}  # template_id -> correction, by age
        self._index: dict[str, set[str]] = {}  # word -> template ids of corrections
        self._seq = 0
        # template_id -> (template text, text category, correction, similar?)
        self._cache: dict[str, tuple[str, str | None, Correction | None, bool]] = {}
        # every input of `triage` -> its answer: most lines repeat one of a few combinations
        self._memo: dict[tuple[Any, ...], Triaged] = {}

    def triage(self, service: str, template_id: str, template: str, level: str = "INFO",
               http_status: int | None = None, peer_ok: bool | None = None,
               user_outcome: str | None = None) -> Triaged:
        """Triage one line of ``service`` whose template the miner gave."""
        key = (service, template_id, template, level, http_status, peer_ok, user_outcome)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if len(self._memo) >= self.config.cache_size:
            self._memo.clear()
        hit = self._memo[key] = self._triage(service, template_id, template, level,
                                             http_status, peer_ok, user_outcome)
        return hit

    def _triage(self, service: str, template_id: str, template: str, level: str,
                http_status: int | None, peer_ok: bool | None, user_outcome: str | None
                ) -> Triaged:
        entry = self._cache.get(template_id)
        if entry is None or entry[0] != template:
            entry = self._lookup(template_id, template)
        _, cat, corr, similar = entry
        source: Source = "rules"
        if corr is not None and corr.category is not None:
            cat, source = corr.category, "similar" if similar else "feedback"
        elif cat is None:
            cat = signal_category(http_status, peer_ok, user_outcome)
            cat, source = (UNKNOWN, "rules") if cat is None else (cat, "signals")
        if corr is not None and corr.priority is not None:
            prio = corr.priority
            if corr.category is None:
                source = "similar" if similar else "feedback"
        else:
            prio = self.categoriser.priority(cat, level)
        return Triaged(cat, prio, self.router.team_for(service), source)

    def _lookup(self, template_id: str, template: str
                ) -> tuple[str, str | None, Correction | None, bool]:
        corr = self._corrections.get(template_id)
        similar = False
        if corr is None and self._corrections:
            corr = self.most_similar(template)
            similar = corr is not None
        entry = (template, self.categoriser.text_category(template), corr, similar)
        if len(self._cache) >= self.config.cache_size:
            self._cache.clear()
        self._cache[template_id] = entry
        return entry

    def most_similar(self, template: str) -> Correction | None:
        """The correction whose template is most similar to ``template``, if similar enough."""
        mine = words(template)
        ids: set[str] = set()
        for w in mine:
            ids |= self._index.get(w, set())
        best: Correction | None = None
        best_key = (self.config.similarity, -1)
        for tid in ids:
            c = self._corrections[tid]
            key = (jaccard(mine, c.words), c.seq)
            if key >= best_key:
                best, best_key = c, key
        return best

    def apply_feedback(self, template_id: str, template_text: str, *,
                       category: str | None = None, priority: str | None = None) -> None:
        """Correct a template: it and similar templates follow from the next line on."""
        if category is not None and not _CATEGORY_NAME.match(category):
            raise ValueError(f"bad category name {category!r}")
        prio = parse_priority(priority) if priority is not None else None
        if category is None and prio is None:
            return  # a confirmation: nothing to learn here (see AccuracyTracker)
        old = self._corrections.pop(template_id, None)
        if old is not None:
            self._unindex(old)
            category = category if category is not None else old.category
            prio = prio if prio is not None else old.priority
        self._seq += 1
        c = Correction(template_id, template_text, category, prio, self._seq,
                       words(template_text))
        self._corrections[template_id] = c
        for w in c.words:
            self._index.setdefault(w, set()).add(template_id)
        while len(self._corrections) > self.config.max_corrections:
            self._unindex(self._corrections.pop(next(iter(self._corrections))))
        self._cache.clear()  # every template looks again at the corrections, lazily
        self._memo.clear()

    def alias(self, old_id: str, new_id: str, template_text: str) -> None:
        """Template ``old_id`` was merged into ``new_id``: a correction of the old one carries
        over unless the survivor has its own (the old one stays for rows keyed by it)."""
        c = self._corrections.get(old_id)
        if c is not None and new_id not in self._corrections:
            self.apply_feedback(new_id, template_text, category=c.category,
                                priority=c.priority)

    def _unindex(self, c: Correction) -> None:
        for w in c.words:
            ids = self._index.get(w)
            if ids is not None:
                ids.discard(c.template_id)
                if not ids:
                    del self._index[w]

    @property
    def corrections(self) -> list[Correction]:
        """Every correction, oldest first."""
        return list(self._corrections.values())

    def snapshot(self) -> bytes:
        """The learnt corrections as compact JSON (for a changelog table)."""
        rows = [[c.template_id, c.template, c.category, c.priority, c.seq]
                for c in self._corrections.values()]
        return orjson.dumps({"v": _SNAPSHOT_VERSION, "corrections": rows})

    def restore(self, data: bytes) -> None:
        """Replace the corrections with a `snapshot`."""
        doc = orjson.loads(data)
        if doc.get("v") != _SNAPSHOT_VERSION:
            raise ValueError(f"unknown triage snapshot version {doc.get('v')!r}")
        self._corrections.clear()
        self._index.clear()
        self._cache.clear()
        self._memo.clear()
        for tid, template, category, priority, seq in sorted(doc["corrections"],
                                                             key=lambda r: int(r[4])):
            self._seq = int(seq) - 1
            self.apply_feedback(str(tid), str(template), category=category, priority=priority)
