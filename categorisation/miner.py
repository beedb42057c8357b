"""Online log template mining: Drain clusters split by value cardinality, one miner per service.

Two published ideas, each doing what it is good at:

1. **Drain** (He et al., ICWS 2017) groups lines cheaply. A line is masked
   (`categorisation.masking`: only unambiguous variables such as numbers, IPs, UUIDs, hex),
   split into tokens and routed through a fixed-depth prefix tree (token count, then the first
   tokens). The leaf holds clusters; the line joins the most similar one (share of equal tokens
   at equal positions) if that share reaches ``sim_threshold`` and, as Drain's similarity
   counts equal *constant* tokens, they share at least one constant word (``123 apples`` and
   ``456 pears`` stay apart). Positions where a cluster's lines differ become *slots*.
2. **Brain** (Yu et al., IEEE TSC 2023) decides which slots are variables from the data: in
   its bidirectional tree a column is a variable when it holds more than a threshold of
   distinct values, and otherwise splits the group. Here a slot is a variable once it has held
   more than ``max_constant_values`` distinct values, or any masked value (a slot that ever
   holds a number or an IP is a parameter slot). Until then its value is part of the template:
   "Connection closed by <*>" and "Connection reset by <*>" share a Drain cluster but are two
   templates.
3. The **first token** is where the tree routes, so its values never meet in a cluster and
   Brain's rule would never see them. It is applied there directly
   (``variable_first_token``): once more than ``max_constant_values`` first tokens were seen
   before the same rest of a line, or two or more that were all seen filling variables
   elsewhere (``value_vocabulary``, shared by a fleet's services: ``GET`` and ``POST``
   starting access lines), the first token is a variable, the templates made per value
   merge into the oldest (aliases as above), and lines of that shape route by their *next*
   token below a ``<*>`` node, so short lines of other shapes do not meet them. The same
   count per rest with one position left out finds a first token and one more unmasked
   variable (`_first_and_another`).
4. **Other lengths**: a line that would start a cluster but fits a template of another
   length, a ``<*>`` standing for several words that are values, takes that template, and a
   template that turns more general absorbs those it now fits (`_fit`, `_fold_into`).
5. **Late joiners**: lines with several variables not yet known to vary are too different
   for Drain's similarity and start clusters of their own; when a slot turns variable, the
   templates of the leaf's other clusters that the template now holds position by position
   (equal words, its variables elsewhere; with enough constant words left) merge into it
   (`_absorb_covered`).

A slot only ever turns from constant to variable, never back. When it does, the templates of
its cluster that differed only there merge into the oldest one, which keeps its id; each
absorbed id becomes an *alias* of it (`resolve`, `pop_merges`), so rows, alerts and
corrections stored under the old id still find their template. Ids are stable across restarts
and workers: a hash of the service and the template's *first* text.

Assumptions, stated: a line's template does not depend on its length beyond adjacent variables
(runs of ``<*>`` print as one, so a two-word and a three-word search query meet); a slot that
takes few distinct values over a service's life is a constant (an enumeration such as a state
name is kept apart, as the corrected Loghub ground truth mostly does); only the first line of a
multi-line message (a stack trace) is mined, the rest is one ``<*>``.

>>> miner = TemplateMiner("sshd")
>>> a = miner.add("Accepted password for alice from 10.0.0.7 port 22")
>>> b = miner.add("Accepted password for bob from 10.0.0.9 port 2222")
>>> (a.change, b.change, b.template, a.template_id == b.template_id)
('new', 'new', 'Accepted password for bob from <*> port <*>', False)
>>> for user in ("carol", "dave", "erin"):
...     m = miner.add(f"Accepted password for {user} from 10.0.0.1 port 22")
>>> (m.change, m.template, m.size, m.template_id == a.template_id)
('changed', 'Accepted password for <*> from <*> port <*>', 5, True)
>>> miner.resolve(b.template_id) == a.template_id
True
>>> twin = TemplateMiner("sshd")
>>> twin.restore(miner.snapshot())
>>> twin.add("Accepted password for zoe from 10.0.0.1 port 22").template_id == a.template_id
True
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from categorisation.config import MinerConfig
from categorisation.masking import WILDCARD, Masker

Change = Literal["new", "changed", "same"]
_SNAPSHOT_VERSION = 2
_SNAPSHOT_VOCAB = 4096  # most recent words seen as values kept in a snapshot
_KV_WILDCARD = "=" + WILDCARD
_MAX_ALIAS_HOPS = 64  # alias chains are short (each merge points at a live template)
_MAX_PAIR_HOLDERS = 8  # slots remembered per pair of values
_MAX_PAIR_TOKENS = 64  # longer lines are not counted by `_first_and_another` (cost)
_FIT_MIN_CONSTANTS = 3  # constant words a template needs to be fitted by `_fit`
_FIT_CANDIDATES = 64  # templates tried per first word by `_fit` (cost)
_VARIABLE: set[str] = set()  # `TemplateMiner._firsts` of a rest whose first token is a variable


class Match(NamedTuple):  # a tuple: one per line, much cheaper to make than a dataclass
    """Where one line went: its template, the template's size, and what the line changed."""

    template_id: str
    template: str
    size: int
    change: Change  # "new" template, template "changed" (generalised or merged), or "same"

    @property
    def is_new(self) -> bool:
        return self.change == "new"


@dataclass(slots=True, eq=False)
class _Template:
    id: str
    text: str
    size: int
    seq: int  # creation order: on a merge the oldest survives
    refs: int = 0  # clusters holding it (a text can be reached from clusters of two lengths)
    into: _Template | None = None  # set when merged into another template
    alive: bool = True


@dataclass(slots=True, eq=False)
class _Cluster:
    key: int
    tokens: list[str]  # WILDCARD at variable positions; slot positions keep their first value
    size: int
    leaf: tuple[str, ...]
    slots: dict[int, set[str]] = field(default_factory=dict)  # constant so far: values seen
    order: list[int] = field(default_factory=list)  # slot positions, sorted
    templates: dict[tuple[str, ...], _Template] = field(default_factory=dict)  # slot values
    last: int = 0  # tick of the last line that joined
    alive: bool = True


def _generalise(t: str, u: str) -> str:
    """The template token covering two different tokens: ``<*>``, or ``key=<*>``."""
    if t == WILDCARD:
        return t
    eq = t.find("=")
    if eq > 0 and t[: eq + 1] == u[: eq + 1] and not (t[-1] == u[-1] == "="):
        return t[: eq + 1] + WILDCARD
    return WILDCARD


def _covered(values: set[str]) -> bool:
    """Whether a masked value covers another value of the slot (``(<*>)`` covers ``()`` and
    ``(10.0.0.1)``, ``<*>`` covers anything): the slot holds a variable. ``LOGIN(uid=<*>)``
    and ``(uid=<*>)`` cover neither other: two constants, each holding a variable."""
    for w in values:
        if WILDCARD in w:
            rx = _cover_regex(w)
            if any(v != w and rx.fullmatch(v) for v in values):
                return True
    return False


def _covers(general: list[str], words: list[str]) -> bool:
    """Whether template tokens ``general`` hold ``words`` position by position: equal, or a
    variable there (a partial one, ``uid=<*>``, by its pattern); at least one variable, and
    the constant words alike."""
    variables = 0
    for g, w in zip(general, words, strict=True):
        if g == w:
            continue
        if WILDCARD not in g or (g != WILDCARD and _cover_regex(g).fullmatch(w) is None):
            return False
        variables += 1
    return variables > 0


@functools.lru_cache(maxsize=4096)
def _cover_regex(value: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in value.split(WILDCARD)), re.S)


def _align(template: list[str], tokens: tuple[str, ...], values: set[str]
           ) -> list[str] | None:
    """``tokens`` with the words that fall in a standalone ``<*>`` of ``template`` turned
    into ``<*>``, and those under a partial variable (``uid=<*>``) into it; None when they do
    not fit. A ``<*>`` takes one word, or several when all but its last are values (masked,
    or in ``values``, words seen filling variables): ``for <*> from`` takes ``for alice
    from`` and ``for "red shoes" from``, not ``for invalid user alice from``. A dynamic
    programme over both sequences."""
    n, m = len(template), len(tokens)
    last = template[-1] if n else ""
    if m < n or (WILDCARD not in last and last != tokens[-1]):
        return None  # cheap: most templates tried are told apart by their last word
    # ok[i][j]: template[i:] fits tokens[j:]
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n - 1, -1, -1):
        t = template[i]
        row, below = ok[i], ok[i + 1]
        if t == WILDCARD:
            for j in range(m - 1, -1, -1):  # this word ends it, or it goes on
                u = tokens[j]
                row[j] = below[j + 1] or (row[j + 1] and (WILDCARD in u or u in values))
        else:
            partial = WILDCARD in t
            for j in range(m - 1, -1, -1):
                u = tokens[j]
                row[j] = below[j + 1] and (u == t or (partial and _cover_regex(t).fullmatch(u)
                                                      is not None))
    if not ok[0][0]:
        return None
    out = list(tokens)
    i = j = 0
    while i < n:
        t = template[i]
        if t == WILDCARD:
            out[j] = WILDCARD
            j += 1
            while not ok[i + 1][j]:  # the shortest run the rest fits after (it exists)
                out[j] = WILDCARD
                j += 1
        else:
            out[j] = t
            j += 1
        i += 1
    return out


def _fits_many(words: list[str]) -> bool:
    """Whether a template may take lines of other lengths (`TemplateMiner._fit`): it has a
    standalone ``<*>``, and at least ``_FIT_MIN_CONSTANTS`` constant words and as many as its
    variables (a template that is mostly ``<*>`` would swallow lines of other shapes)."""
    variables = sum(w == WILDCARD for w in words)
    return variables > 0 and len(words) - variables >= max(_FIT_MIN_CONSTANTS, variables)


def _collapse(tokens: list[str]) -> str:
    """Tokens joined by spaces, a run of standalone ``<*>`` written once."""
    out: list[str] = []
    for t in tokens:
        if t == WILDCARD and out and out[-1] == WILDCARD:
            continue
        out.append(t)
    return " ".join(out)


def template_id(service: str, template: str) -> str:
    """The stable id of a template: a hash of its service and first text."""
    raw = f"{service}\x1f{template}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


class TemplateMiner:
    """Online template miner for the messages of one service (see the module docstring)."""

    def __init__(self, service: str = "", config: MinerConfig | None = None) -> None:
        self.service = service
        self.config = cfg = config or MinerConfig()
        self.masker = Masker(cfg.masking)
        self._clusters: OrderedDict[int, _Cluster] = OrderedDict()  # LRU order, oldest first
        self._leaves: dict[tuple[str, ...], list[_Cluster]] = {}
        self._children: dict[tuple[str, ...], set[str]] = {}
        self._cache: dict[tuple[str, ...], tuple[_Cluster, _Template]] = {}
        self._templates: dict[str, _Template] = {}  # live templates by id
        self._by_text: dict[str, _Template] = {}  # live templates by text
        self._aliases: OrderedDict[str, str] = OrderedDict()  # absorbed id -> id, oldest first
        self._merges: list[tuple[str, str]] = []  # (absorbed, survivor) since `pop_merges`
        self._vocab: set[str] = set()  # words seen as values of variable slots (shared)
        # the words this miner saw as values, oldest first: its part of the shared vocabulary,
        # kept in its snapshot (the last _SNAPSHOT_VOCAB) so a restart does not forget them
        self._own_vocab: dict[str, None] = {}
        # pairs of values held by a slot -> (miner, cluster, slot) holding them; shared by the
        # miners of one registry (`share_values_with`): a fleet's services share value types
        self._pairs: dict[tuple[str, str], list[tuple[TemplateMiner, _Cluster, int]]] = {}
        self._flip_later: list[tuple[TemplateMiner, _Cluster, int]] = []
        # the rest of a masked line (all but its first token) -> first tokens seen with it
        self._firsts: dict[tuple[str, ...], set[str]] = {}
        # the same, per rest with one position left out -> (lines, first tokens, its values)
        self._pair_counts: dict[tuple[str, ...], tuple[list[tuple[str, ...]], set[str],
                                                       set[str]]] = {}
        # first word of a live template's text -> its id -> (template, words, whether
        # `_fits_many`): `_fit` and `_fold_into`
        self._by_first: dict[str, dict[str, tuple[_Template, list[str], bool]]] = {}
        # token count -> clusters of shapes whose first token and one more vary
        self._pair_shapes: dict[int, list[_Cluster]] = {}
        self._touched: list[TemplateMiner] = []  # other miners whose slots this one flipped
        self._tick = 0
        self._seq = 0
        self._next_key = 0

    def __len__(self) -> int:
        return len(self._templates)

    def share_values_with(self, other: TemplateMiner) -> None:
        """Use ``other``'s index of slot values (``shared_values``) and its words seen as
        values (``value_vocabulary``): the services of one fleet share value types (HTTP
        methods, peer and provider names)."""
        self._pairs = other._pairs
        self._vocab = other._vocab

    def add(self, content: str) -> Match:
        """Mine one message: find or create its template and return the match."""
        if self.config.first_line_only and "\n" in content:
            first = content.split("\n", 1)[0]
            content = f"{first} {WILDCARD}" if first.strip() else content.strip()
        key = self.masker.mask_line(content)
        self._tick += 1
        hit = self._cache.get(key)
        if hit is not None:
            cluster, t = hit
            while t.into is not None:
                t = t.into
            if cluster.alive and t.alive and not (key and key[0] in self._vocab
                                                  and self._first_turned(key, cluster)):
                t.size += 1
                cluster.size += 1
                cluster.last = self._tick
                self._clusters.move_to_end(cluster.key)
                return Match(t.id, t.text, t.size, "same")
        cluster, absorb = self._route(key)
        t, change = self._join(cluster, key)
        if absorb:
            t = self._absorb(absorb, t, change == "new")
            change = "changed"
        if self.config.cache_size:
            if len(self._cache) >= self.config.cache_size:
                self._cache.clear()
            self._cache[key] = (cluster, t)
        return Match(t.id, t.text, t.size, change)

    def templates(self) -> dict[str, str]:
        """Every live template's id and text."""
        return {t.id: t.text for t in self._templates.values()}

    def resolve(self, tid: str) -> str:
        """The live id an id now stands for: itself, or the template it was merged into."""
        for _ in range(_MAX_ALIAS_HOPS):
            nxt = self._aliases.get(tid)
            if nxt is None:
                break
            tid = nxt
        return tid

    def text(self, tid: str) -> str | None:
        """The current text of a template (an absorbed id gives its survivor's)."""
        t = self._templates.get(self.resolve(tid))
        return None if t is None else t.text

    def size(self, tid: str) -> int:
        """Lines a template holds (an absorbed id gives its survivor's); 0 when unknown."""
        t = self._templates.get(self.resolve(tid))
        return 0 if t is None else t.size

    def aliases(self) -> dict[str, str]:
        """Every remembered absorbed id and the live id it resolves to."""
        return {old: self.resolve(old) for old in self._aliases}

    def pop_merges(self) -> list[tuple[str, str]]:
        """The (absorbed id, surviving id) merges since the last call."""
        out, self._merges = self._merges, []
        return out

    def pop_touched(self) -> list[TemplateMiner]:
        """Miners sharing the value index whose templates this one merged since the last call
        (their `pop_merges` has news)."""
        out, self._touched = self._touched, []
        return out

    # -- routing and similarity (Drain) -------------------------------------------------------

    def _route(self, tokens: tuple[str, ...]) -> tuple[_Cluster, list[tuple[str, ...]]]:
        """The cluster of a masked line: the most similar of its leaf, or a new one; and the
        lines whose templates this line's now absorbs (see `_first_is_variable` and
        `_first_and_another`)."""
        firsts = self._first_is_variable(tokens)
        if firsts is None and self._pair_shapes:
            shaped = self._pair_shape(tokens)
            if shaped is not None:
                return shaped, []
        absorb = None if firsts is None else [(f, *tokens[1:]) for f in firsts]
        leaf = self._leaf_key(tokens, first_variable=absorb is not None)
        candidates = self._leaves.get(leaf)
        best = self._best(candidates, tokens) if candidates else None
        if best is not None:
            return best, absorb or []
        if absorb is None and self.config.variable_first_token and leaf[1:2] != (WILDCARD,):
            # A first token found variable before (the counts are not snapshotted), or lines
            # whose rest never repeats (it holds unmasked variables): a cluster whose first
            # token is a variable (absorbed or masked) and whose rest this line matches.
            others = [c for path in (self._leaf_key(tokens, first_variable=True,
                                                    known_only=True),
                                     self._leaf_key((WILDCARD, *tokens[1:]), known_only=True))
                      for c in self._leaves.get(path, ()) if c.tokens[0] == WILDCARD]
            best = self._best(others, tokens, exact=True) if others else None
            if best is not None:
                return best, []
            pair = self._first_and_another(tokens)
            if pair is not None:
                return pair
        shape = self._fit(tokens) if self.config.collapse_variables else None
        if shape is not None:
            if absorb is not None:  # it fitted the template of its own first token
                shape[0] = WILDCARD
            return self._create(shape, leaf), absorb or []
        cluster = self._create(list(tokens), leaf)
        if absorb is not None:
            cluster.tokens[0] = WILDCARD
        return cluster, absorb or []

    def _first_is_variable(self, tokens: tuple[str, ...]) -> list[str] | None:
        """Brain's column rule for the first token, which the tree routes by and so never
        meets another value in a cluster: once more than ``max_constant_values`` first tokens
        were seen before the same rest of a line (``alice logged in from <*>``), or two or
        more all seen filling variables (``value_vocabulary``: ``GET`` and ``POST`` before
        ``<*> completed <*> in <*>``, after ``slow request <*> took`` showed them to be
        values), the first token is a variable. Returns None while it is a constant, else
        the first tokens whose templates are still to be absorbed (empty after the crossing).
        """
        cfg = self.config
        if (not cfg.variable_first_token or cfg.prefix_tokens < 1 or len(tokens) < 2
                or WILDCARD in tokens[0]):
            return None
        rest = tokens[1:]
        firsts = self._firsts.get(rest)
        if firsts is None:
            if len(self._firsts) >= cfg.cache_size:
                self._firsts.clear()  # cheap bound: relearnt from new lines
            firsts = self._firsts[rest] = set()
        if firsts is _VARIABLE:
            return []
        firsts.add(tokens[0])
        if len(firsts) > cfg.max_constant_values or self._known_values(firsts):
            self._firsts[rest] = _VARIABLE
            return list(firsts)  # this line's value too, if it has a template already
        return None

    def _first_turned(self, tokens: tuple[str, ...], c: _Cluster) -> bool:
        """Whether the constant first token of a cached line became a variable since (its
        values were all seen filling variables later, `_first_is_variable`): the line must
        route again, to merge the templates made per value."""
        if c.tokens[0] == WILDCARD:
            return False
        firsts = self._firsts.get(tokens[1:])
        return firsts is not None and firsts is not _VARIABLE and self._known_values(firsts)

    def _known_values(self, firsts: set[str]) -> bool:
        """Two or more first tokens, all seen filling variables (``value_vocabulary``)."""
        return self.config.value_vocabulary and len(firsts) > 1 and firsts <= self._vocab

    def _learn(self, value: str) -> None:
        """``value`` filled a variable: into the shared vocabulary and this miner's part."""
        self._vocab.add(value)
        own = self._own_vocab
        if value not in own:
            if len(own) >= self.config.cache_size:
                own.clear()  # cheap bound, as the vocabulary's
            own[value] = None

    def _first_and_another(self, tokens: tuple[str, ...]
                           ) -> tuple[_Cluster, list[tuple[str, ...]]] | None:
        """Brain's column rule for the first token and one more unmasked variable.

        The rule of `_first_is_variable` counts first tokens before the *same* rest of a line,
        so a line with a second unmasked variable (``<class> <host> received for``) never
        repeats its rest, and every line stays a template of its own. Here the lines that
        start a cluster are also counted per rest with one position left out: once more than
        ``max_constant_values`` first tokens *and* more than ``max_constant_values`` values
        at that position were seen with the same other words, both are variables (two
        one-word siblings, ``closed`` and ``reset``, never make the second count). At least
        two constant words must remain. Returns the cluster of the new shape and the lines
        whose templates it absorbs, or None."""
        cfg = self.config
        n = len(tokens)
        if (not cfg.variable_first_token or cfg.prefix_tokens < 1 or n < 4
                or n > _MAX_PAIR_TOKENS or WILDCARD in tokens[0]):
            return None
        constants = sum(WILDCARD not in u for u in tokens) - 1
        if constants < 3:
            return None
        limit = cfg.max_constant_values
        for j in range(1, n):
            u = tokens[j]
            if WILDCARD in u:
                continue
            key = (str(j), *tokens[1:j], *tokens[j + 1:])
            seen = self._pair_counts.get(key)
            if seen is None:
                if len(self._pair_counts) >= cfg.cache_size:
                    self._pair_counts.clear()  # cheap bound: relearnt from new lines
                seen = self._pair_counts[key] = ([], set(), set())
            lines, firsts, values = seen
            firsts.add(tokens[0])
            values.add(u)
            if len(lines) < 4 * limit:
                lines.append(tokens)
            if len(firsts) > limit and len(values) > limit:
                del self._pair_counts[key]
                shape = [WILDCARD, *tokens[1:]]
                shape[j] = WILDCARD
                cluster = self._create(shape, self._leaf_key(tuple(shape), first_variable=True))
                self._pair_shapes.setdefault(n, []).append(cluster)
                return cluster, [line for line in lines if line is not tokens]
        return None

    def _fit(self, tokens: tuple[str, ...]) -> list[str] | None:
        """A line that starts a cluster but fits a template of another length, a standalone
        ``<*>`` standing for one token or more (the assumption behind ``collapse_variables``:
        a variable of three words is the variable of one): its tokens, with those that fall
        in a ``<*>`` turned into ``<*>``, so the new cluster's text is that template's.

        Drain's first split is the token count, so a line whose variable is a word longer
        (``SELECT id, name FROM ...`` after ``SELECT id FROM ...``) starts a template of its
        own until its own length has seen enough values. Only templates with at least
        ``_FIT_MIN_CONSTANTS`` constant words, and as many as their variables, are fitted: a
        template that is mostly ``<*>`` would swallow lines of other shapes."""
        if not tokens:
            return None
        first = tokens[0]
        for key in (first, WILDCARD) if WILDCARD not in first else (WILDCARD,):
            bucket = self._by_first.get(key)
            if not bucket:
                continue
            for _, words, many in list(bucket.values())[-_FIT_CANDIDATES:]:
                if many and len(words) <= len(tokens):
                    found = _align(words, tokens, self._vocab)
                    if found is not None:
                        return found
        return None

    def _fold_into(self, t: _Template) -> _Template:
        """Merge into ``t``, which just became more general, the templates of other lengths
        that its text now fits (`_fit`, the other way round: they were made before it was
        general enough). The oldest keeps its id, the others become aliases."""
        words = t.text.split(" ")
        bucket = self._by_first.get(words[0])
        if words[0] == WILDCARD or not bucket or not _fits_many(words):
            return t
        text = t.text
        for u, other, _ in list(bucket.values())[-_FIT_CANDIDATES * 4:]:
            if (u is not t and u.alive and len(other) >= len(words)
                    and _align(words, tuple(other), self._vocab) is not None):
                t = self._merge(t, u, False)
                self._retext(t, text)
        return t

    def _pair_shape(self, tokens: tuple[str, ...]) -> _Cluster | None:
        """The cluster of a shape found by `_first_and_another` that ``tokens`` fits."""
        shapes = self._pair_shapes.get(len(tokens))
        if not shapes or WILDCARD in tokens[0]:
            return None
        if not all(c.alive for c in shapes):  # evicted ones go
            shapes[:] = [c for c in shapes if c.alive]
        for c in shapes:  # its first token and the other position are <*> in c.tokens
            if all(t == u for t, u in zip(c.tokens, tokens, strict=True) if WILDCARD not in t):
                return c
        return None

    def _absorb(self, lines: list[tuple[str, ...]], t: _Template, fresh: bool) -> _Template:
        """Merge the templates of ``lines`` (one per first token, made while it was a
        constant) into ``t``, the template with a variable first token. The oldest keeps its
        id, the others become its aliases (``fresh``: ``t`` was made for this line)."""
        survivor, text = t, t.text
        covers = _cover_regex(text)
        for line in lines:
            first = line[0]
            self._cache.pop(line, None)
            candidates = self._leaves.get(self._leaf_key(line, known_only=True))
            c = self._best(candidates, line) if candidates else None
            if c is None or c.tokens[0] == WILDCARD:
                continue
            key = tuple(line[i] for i in c.order)
            old = c.templates.get(key)
            while old is not None and old.into is not None:
                old = old.into
            # only a template of this rest of a line: ``ann <*>`` may hold ``ann left`` too
            if (old is None or not old.text.startswith(f"{first} ")
                    or not covers.fullmatch(WILDCARD + old.text[len(first):])):
                continue
            del c.templates[key]  # c keeps its shape while it holds other templates
            if not c.templates:  # else lines would make a per-value template again there
                self._clusters.pop(c.key, None)
                self._drop(c)
            old.refs -= 1  # merges fold refs into the survivor
            if old.alive and old is not survivor:
                survivor = self._merge(survivor, old, False)
        self._retext(survivor, text)
        if fresh and survivor is not t:  # no line ever saw ``t``'s id: forget it
            self._merges = [m for m in self._merges if m[0] != t.id]
            self._aliases.pop(t.id, None)
        return survivor

    def _leaf_key(self, tokens: tuple[str, ...], first_variable: bool = False,
                  known_only: bool = False) -> tuple[str, ...]:
        """The tree path of a line: its token count, then up to `prefix_tokens` tokens
        (``known_only``: the path as it stands, without adding a child).

        A first token that is a variable (``first_variable``, Brain's rule) is a ``<*>`` node
        that does not use up `prefix_tokens`: below it the path goes on with the next tokens.
        Without that, every such line of one length would share one leaf, where short lines
        of any shape are a difference apart and end as one all-``<*>`` template."""
        path: tuple[str, ...] = (str(len(tokens)),)
        rest = tokens
        if first_variable:
            path, rest = (*path, WILDCARD), tokens[1:]
        for tok in rest[: self.config.prefix_tokens]:
            if WILDCARD in tok:
                tok = WILDCARD
            elif known_only:
                if tok not in self._children.get(path, ()):
                    tok = WILDCARD
            else:
                kids = self._children.setdefault(path, set())
                if tok not in kids:
                    if len(kids) >= self.config.max_children:
                        tok = WILDCARD
                    else:
                        kids.add(tok)
            path = (*path, tok)
        return path

    def _best(self, candidates: list[_Cluster], tokens: tuple[str, ...], exact: bool = False
              ) -> _Cluster | None:
        """The most similar cluster of a leaf, if similar enough (Drain's fast match).

        Similar means: at most ``max(1, (1 - sim_threshold) * n)`` of the n positions differ
        (none if ``exact``), and a line holding a constant word shares one with the cluster.
        A slot or a variable of the cluster never differs (the split by values comes after),
        nor does ``key=value`` meeting ``key=<*>``.
        """
        n = len(tokens)
        allowed = 0 if exact else max(1, int((1.0 - self.config.sim_threshold) * n + 1e-9))
        best: _Cluster | None = None
        best_diff, best_params = n + 1, -1
        runs = self.config.diff_runs
        constant = any(WILDCARD not in u for u in tokens)
        for c in candidates:
            diff = params = same = 0
            slots = c.slots
            last = -2  # position of the previous difference
            for i, (t, u) in enumerate(zip(c.tokens, tokens, strict=True)):
                if t == u:
                    if t != WILDCARD:
                        same += 1
                    continue
                if t == WILDCARD or i in slots:
                    params += 1
                    if runs and last == i - 1:
                        last = i  # a slot extends a run of differences
                elif t[-4:] == _KV_WILDCARD and len(u) > len(t) - 3 and u.startswith(t[:-3]):
                    continue
                else:
                    if not (runs and last == i - 1):
                        diff += 1
                    last = i
            if constant and not same:
                continue  # no constant word in common: joining would leave only <*>
            if diff < best_diff or (diff == best_diff and params > best_params):
                best, best_diff, best_params = c, diff, params
        return best if best_diff <= allowed else None

    # -- slots and templates (Brain's column rule) -------------------------------------------

    def _join(self, c: _Cluster, tokens: tuple[str, ...]) -> tuple[_Template, Change]:
        """Add a line to its cluster: new slots, values, flips to variable; its template."""
        cfg = self.config
        new_slots = False
        for i, (was, u) in enumerate(zip(c.tokens, tokens, strict=True)):
            if was != u and was != WILDCARD and i not in c.slots:
                c.slots[i] = {was}
                new_slots = True
        if new_slots:
            self._reorder(c)
        flips = []
        for i, values in c.slots.items():
            u = tokens[i]
            if u not in values:
                values.add(u)
                if (len(values) > cfg.max_constant_values or _covered(values)
                        or (cfg.shared_values and self._shared(c, i, u, values))):
                    flips.append(i)
                    continue
            if cfg.value_vocabulary and all(v in self._vocab for v in values):
                flips.append(i)
        for i in flips:
            self._flip(c, i)
        if self._flip_later:
            for miner, other, j in self._flip_later:
                if other.alive and j in other.slots:
                    miner._flip(other, j)
                    if miner is not self:
                        self._touched.append(miner)
            self._flip_later.clear()
        if cfg.value_vocabulary and len(self._vocab) < cfg.cache_size:
            for i, tok in enumerate(c.tokens):
                if tok == WILDCARD and WILDCARD not in tokens[i]:
                    self._learn(tokens[i])
        c.size += 1
        c.last = self._tick
        self._clusters.move_to_end(c.key)
        key = tuple(tokens[i] for i in c.order)
        t = c.templates.get(key)
        while t is not None and t.into is not None:  # merged via a cluster sharing its text
            t = c.templates[key] = t.into
        created = False
        if t is None or not t.alive:
            t, created = self._template(c, key)
        change: Change = "new" if created else "changed" if flips else "same"
        t.size += 1
        self._evict()
        return t, change

    def _shared(self, c: _Cluster, i: int, u: str, values: set[str]) -> bool:
        """Whether slot ``i`` of ``c``, which just took value ``u``, shares a pair of values
        with a slot of another cluster: a set of values that recurs across templates is a
        type of variable (HTTP methods, peer names), not words of one template. The other
        slot flips too (queued in ``_flip_later``)."""
        shared = False
        pairs = self._pairs
        for v in values:
            if v == u or WILDCARD in v:
                continue
            key = (u, v) if u < v else (v, u)
            holders = pairs.get(key)
            if holders is None:
                if len(pairs) >= self.config.cache_size:
                    pairs.clear()  # cheap bound: pairs are learnt again
                holders = pairs[key] = []
            for miner, other, j in holders:
                if other is not c and other.alive and j in other.slots:
                    shared = True
                    self._flip_later.append((miner, other, j))
            if len(holders) < _MAX_PAIR_HOLDERS:
                holders.append((self, c, i))
        return shared

    def _reorder(self, c: _Cluster) -> None:
        """Re-key a cluster's templates after new slots appeared (their values: the old
        constant, which every template so far had there)."""
        old_order = c.order
        c.order = sorted(c.slots)
        rekeyed = {}
        for key, t in c.templates.items():
            vals = dict(zip(old_order, key, strict=True))
            rekeyed[tuple(vals.get(i, c.tokens[i]) for i in c.order)] = t
        c.templates = rekeyed

    def _text(self, c: _Cluster, key: tuple[str, ...]) -> str:
        toks = self._tokens_of(c, key)
        return _collapse(toks) if self.config.collapse_variables else " ".join(toks)

    def _template(self, c: _Cluster, key: tuple[str, ...]) -> tuple[_Template, bool]:
        """The template of ``key`` in ``c``: an existing one with the same text, or a new one."""
        text = self._text(c, key)
        t = self._by_text.get(text)
        created = t is None
        if t is None:
            self._seq += 1
            tid = template_id(self.service, text)
            clash = 0
            while tid in self._templates:  # a live template began with this text, and changed
                clash += 1
                tid = template_id(self.service, f"{text}\x1f{clash}")
            t = _Template(tid, text, 0, self._seq)
            self._templates[t.id] = t
            self._by_text[text] = t
            self._index(t)
            self._aliases.pop(t.id, None)
        t.refs += 1
        c.templates[key] = t
        return t, created

    def _flip(self, c: _Cluster, i: int) -> None:
        """Slot ``i`` of ``c`` is a variable from now on: merge the templates it told apart."""
        values = c.slots.pop(i)
        shown = c.tokens[i]
        for v in values:
            shown = _generalise(shown, v)
        c.tokens[i] = shown
        if self.config.value_vocabulary:
            for v in values:
                if WILDCARD not in v:
                    self._learn(v)
        at = c.order.index(i)
        c.order.pop(at)
        old, c.templates = c.templates, {}
        for key, t in sorted(old.items(), key=lambda kv: kv[1].seq):
            nkey = key[:at] + key[at + 1:]
            text = self._text(c, nkey)
            keep = c.templates.get(nkey)
            shared = keep is not None
            keep = keep or self._by_text.get(text)
            if keep is None or keep is t:
                self._retext(t, text)
                c.templates[nkey] = t
            else:
                survivor = self._merge(keep, t, shared)
                self._retext(survivor, text)
                c.templates[nkey] = survivor
        if self.config.collapse_variables:
            for key, t in c.templates.items():
                c.templates[key] = self._fold_into(t)
        self._absorb_covered(c)

    def _absorb_covered(self, c: _Cluster) -> None:
        """After a flip: the templates of other clusters of ``c``'s leaf that one of ``c``'s
        now covers position by position (they differ from it only where it has variables)
        merge into it, the oldest id kept. Lines with several variables not yet known to
        vary were too different for Drain's similarity and started clusters of their own
        (``<class> <class> ... at <host>``); once the positions are variables they are
        instances of the template."""
        members = self._leaves.get(c.leaf)
        if not members or len(members) < 2:
            return
        mine = []
        for key, t in c.templates.items():
            words = self._tokens_of(c, key)
            if _fits_many(words):  # enough constant words left to tell lines apart
                mine.append((words, t))
        if not mine:
            return
        for o in list(members):
            if o is c or not o.alive:
                continue
            for okey, u in list(o.templates.items()):
                while u.into is not None:
                    u = u.into
                if not u.alive:
                    continue
                words = self._tokens_of(o, okey)
                for general, t in mine:
                    if t is u or not t.alive or not _covers(general, words):
                        continue
                    text = t.text
                    survivor = self._merge(t, u, False)
                    self._retext(survivor, text)
                    o.templates[okey] = survivor
                    for k, x in c.templates.items():
                        if x is t:
                            c.templates[k] = survivor
                    mine = [(g, survivor if x is t else x) for g, x in mine]
                    break

    def _tokens_of(self, c: _Cluster, key: tuple[str, ...]) -> list[str]:
        """The tokens of the template of ``key`` in ``c`` (its slots' values in place)."""
        toks = list(c.tokens)
        for i, v in zip(c.order, key, strict=True):
            toks[i] = v
        return toks

    def _retext(self, t: _Template, text: str) -> None:
        if t.text != text:
            if self._by_text.get(t.text) is t:
                del self._by_text[t.text]
            old, t.text = t.text, text
            self._by_text[text] = t
            self._index(t, old)

    def _index(self, t: _Template, old: str | None = None) -> None:
        """Index a live template by the first word of its text (``old``: its text before)."""
        if old is not None:
            self._unindex(t, old)
        words = t.text.split(" ")
        self._by_first.setdefault(words[0], {})[t.id] = (t, words, _fits_many(words))

    def _unindex(self, t: _Template, text: str) -> None:
        first = text.split(" ", 1)[0]
        bucket = self._by_first.get(first)
        if bucket is not None:
            bucket.pop(t.id, None)
            if not bucket:
                del self._by_first[first]

    def _merge(self, a: _Template, b: _Template, shared: bool) -> _Template:
        """Merge two templates; the older keeps its id, the other becomes its alias.
        ``shared``: both were templates of the cluster being merged (it counted in both)."""
        keep, gone = (a, b) if a.seq <= b.seq else (b, a)
        keep.size += gone.size
        keep.refs += gone.refs - shared
        gone.into = keep
        gone.alive = False
        self._unindex(gone, gone.text)
        if self._by_text.get(gone.text) is gone:
            del self._by_text[gone.text]
        self._templates.pop(gone.id, None)
        for cl in self._clusters.values():  # rare: only clusters sharing the text (collapse)
            if gone.refs > 1 and any(x is gone for x in cl.templates.values()):
                cl.templates = {k: keep if x is gone else x for k, x in cl.templates.items()}
        self._alias(gone.id, keep.id)
        return keep

    def _alias(self, old: str, new: str) -> None:
        self._aliases[old] = new
        self._aliases.move_to_end(old)
        self._merges.append((old, new))
        while len(self._aliases) > self.config.max_aliases:
            self._aliases.popitem(last=False)

    # -- bounds ---------------------------------------------------------------------------------

    def _create(self, tokens: list[str], leaf: tuple[str, ...], size: int = 0) -> _Cluster:
        self._next_key += 1
        cluster = _Cluster(self._next_key, tokens, size, leaf, last=self._tick)
        self._clusters[cluster.key] = cluster
        members = self._leaves.setdefault(leaf, [])
        members.append(cluster)
        if len(members) > self.config.max_leaf_clusters:
            victim = min(members[:-1], key=lambda c: c.last)
            self._clusters.pop(victim.key, None)
            self._drop(victim)
        return cluster

    def _evict(self) -> None:
        """Drop least recently used clusters while more than ``max_clusters`` templates live."""
        while len(self._templates) > self.config.max_clusters and len(self._clusters) > 1:
            self._drop(self._clusters.popitem(last=False)[1])

    def _drop(self, c: _Cluster) -> None:
        c.alive = False
        members = self._leaves.get(c.leaf)
        if members is not None and c in members:
            members.remove(c)
            if not members:
                del self._leaves[c.leaf]
        for t in c.templates.values():
            t.refs -= 1
            if t.refs <= 0 and t.alive:
                t.alive = False
                self._unindex(t, t.text)
                if self._templates.get(t.id) is t:
                    del self._templates[t.id]
                if self._by_text.get(t.text) is t:
                    del self._by_text[t.text]
        c.templates = {}

    # -- state ----------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The state as compact JSON (for a changelog table); `restore` reads it back."""
        temps = sorted(self._templates.values(), key=lambda t: t.seq)
        return orjson.dumps({
            "v": _SNAPSHOT_VERSION,
            "service": self.service,
            "templates": [[t.id, t.text, t.size] for t in temps],
            "clusters": [[c.tokens, c.size, c.leaf, [[i, sorted(c.slots[i])] for i in c.order],
                          [[list(k), t.id] for k, t in c.templates.items()]]
                         for c in self._clusters.values()],
            "aliases": list(self._aliases.items()),
            "vocab": list(itertools.islice(reversed(self._own_vocab), _SNAPSHOT_VOCAB))[::-1],
        })

    def restore(self, data: bytes) -> None:
        """Replace the state with a `snapshot` (this version's or the first); ids, templates
        and aliases come back unchanged."""
        doc = orjson.loads(data)
        version = doc.get("v")
        if version not in (1, _SNAPSHOT_VERSION):
            raise ValueError(f"unknown template snapshot version {version!r}")
        for c in self._clusters.values():  # the shared value index forgets the old ones
            c.alive = False
        pairs, vocab = self._pairs, self._vocab
        self.__init__(str(doc["service"]), self.config)  # type: ignore[misc]
        self._pairs, self._vocab = pairs, vocab  # still the fleet's (`share_values_with`)
        for word in doc.get("vocab", ()):
            self._learn(str(word))
        if version == 1:  # one Drain cluster per template, no slots
            doc = {"templates": [[cid, " ".join(toks), size] for cid, toks, size, _ in
                                 doc["clusters"]],
                   "clusters": [[toks, size, leaf, [], [[[], cid]]] for cid, toks, size, leaf in
                                doc["clusters"]],
                   "aliases": []}
        by_id: dict[str, _Template] = {}
        for tid, text, size in doc["templates"]:
            self._seq += 1
            t = _Template(str(tid), str(text), int(size), self._seq)
            by_id[t.id] = self._templates[t.id] = self._by_text[t.text] = t
            self._index(t)
        for tokens, size, leaf, slots, temps in doc["clusters"]:
            self._restore_cluster(tokens, int(size), tuple(leaf), slots, temps, by_id)
        for old, new in doc["aliases"]:
            self._aliases[str(old)] = str(new)

    def _restore_cluster(self, tokens: list[str], size: int, leaf: tuple[str, ...],
                         slots: list[Any], temps: list[Any], by_id: dict[str, _Template]
                         ) -> None:
        if not temps:  # its templates were absorbed: lines go to the absorbing template
            return
        for depth in range(1, len(leaf)):
            if leaf[depth] != WILDCARD:
                self._children.setdefault(leaf[:depth], set()).add(leaf[depth])
        self._tick += 1
        c = self._create(list(tokens), leaf, size)
        for i, values in slots:
            c.slots[int(i)] = set(values)
        c.order = sorted(c.slots)
        for key, tid in temps:
            t = by_id.get(str(tid))
            if t is not None:
                t.refs += 1
                c.templates[tuple(key)] = t
