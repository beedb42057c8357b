"""Online log template mining, Drain family (He et al., ICWS 2017), one miner per service.

A line is masked (`categorisation.masking`), split into tokens and routed through a fixed-depth
prefix tree: token count, then the first tokens that hold no variable. The leaf holds
clusters; the line joins the most similar one (share of equal constant tokens at equal
positions) if that share reaches ``sim_threshold``, generalising its template (differing
positions become ``<*>``), or starts a new cluster.

Template ids are stable across restarts and workers: a hash of the service and the cluster's
*first* template, kept when the template later generalises. Clusters are capped per service
(least recently matched evicted first), and so is the number of clusters scanned per leaf.

>>> miner = TemplateMiner("sshd")
>>> a = miner.add("Accepted password for alice from 10.0.0.7 port 22")
>>> b = miner.add("Accepted password for bob from 10.0.0.9 port 2222")
>>> (a.change, b.change, b.template, b.size, a.template_id == b.template_id)
('new', 'changed', 'Accepted password for <*> from <*> port <*>', 2, True)
>>> twin = TemplateMiner("sshd")
>>> twin.restore(miner.snapshot())
>>> twin.add("Accepted password for carol from 10.0.0.1 port 22").template_id == a.template_id
True
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, NamedTuple

import orjson

from categorisation.config import MinerConfig
from categorisation.masking import WILDCARD, Masker

Change = Literal["new", "changed", "same"]
_SNAPSHOT_VERSION = 1


class Match(NamedTuple):  # a tuple: one per line, much cheaper to make than a dataclass
    """Where one line went: its template, the cluster size, and what the line changed."""

    template_id: str
    template: str
    size: int
    change: Change  # "new" cluster, template "changed" (generalised), or "same"

    @property
    def is_new(self) -> bool:
        return self.change == "new"


@dataclass(slots=True)
class _Cluster:
    id: str
    tokens: list[str]
    size: int
    leaf: tuple[str, ...]
    last: int = 0  # tick of the last line that joined
    alive: bool = True
    text: str = ""  # the template: the tokens joined (kept in step with them)


_KV_WILDCARD = "=" + WILDCARD


def _generalise(t: str, u: str) -> str:
    """The template token covering two different tokens: ``<*>``, or ``key=<*>``."""
    if t == WILDCARD:
        return t
    eq = t.find("=")
    if eq > 0 and t[: eq + 1] == u[: eq + 1] and not (t[-1] == u[-1] == "="):
        return t[: eq + 1] + WILDCARD
    return WILDCARD


def template_id(service: str, template: str) -> str:
    """The stable id of a cluster: a hash of its service and first template."""
    raw = f"{service}\x1f{template}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


class TemplateMiner:
    """Drain-style online template miner for the messages of one service."""

    def __init__(self, service: str = "", config: MinerConfig | None = None) -> None:
        self.service = service
        self.config = cfg = config or MinerConfig()
        self.masker = Masker(cfg.masking)
        self._clusters: OrderedDict[str, _Cluster] = OrderedDict()  # LRU order, oldest first
        self._leaves: dict[tuple[str, ...], list[_Cluster]] = {}
        self._children: dict[tuple[str, ...], set[str]] = {}
        self._cache: dict[tuple[str, ...], _Cluster] = {}
        self._tick = 0

    def __len__(self) -> int:
        return len(self._clusters)

    def add(self, content: str) -> Match:
        """Mine one message: find or create its cluster and return the match."""
        key = self.masker.mask_line(content)
        self._tick += 1
        cluster = self._cache.get(key)
        if cluster is not None and cluster.alive:
            cluster.size += 1
            cluster.last = self._tick
            self._clusters.move_to_end(cluster.id)
            return Match(cluster.id, cluster.text, cluster.size, "same")
        tokens = list(key)
        leaf = self._leaf_key(tokens)
        candidates = self._leaves.get(leaf)
        best = self._best(candidates, tokens) if candidates else None
        if best is None:
            change: Change = "new"
            cluster = self._create(tokens, leaf)
        else:
            cluster = best
            cluster.size += 1
            change = "same"
            if cluster.tokens != tokens:
                merged = [t if t == u else _generalise(t, u)
                          for t, u in zip(cluster.tokens, tokens, strict=True)]
                if merged != cluster.tokens:
                    cluster.tokens, change = merged, "changed"
                    cluster.text = " ".join(merged)
            cluster.last = self._tick
            self._clusters.move_to_end(cluster.id)
        if self.config.cache_size:
            if len(self._cache) >= self.config.cache_size:
                self._cache.clear()
            self._cache[key] = cluster
        return Match(cluster.id, cluster.text, cluster.size, change)

    def templates(self) -> dict[str, str]:
        """Every live cluster's id and template."""
        return {c.id: c.text for c in self._clusters.values()}

    def _leaf_key(self, tokens: list[str]) -> tuple[str, ...]:
        """The tree path of a line: its token count, then up to `prefix_tokens` tokens."""
        path: tuple[str, ...] = (str(len(tokens)),)
        for tok in tokens[: self.config.prefix_tokens]:
            if WILDCARD in tok:
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

    def _best(self, candidates: list[_Cluster], tokens: list[str]) -> _Cluster | None:
        """The most similar cluster of a leaf, if similar enough (Drain's fast match).

        Similar means: at most ``max(1, (1 - sim_threshold) * n)`` of the n positions differ,
        where a variable meeting a variable, and ``key=value`` meeting a template's
        ``key=<*>``, do not differ. Allowing one difference whatever the length keeps short
        messages with one unmasked variable together.
        """
        n = len(tokens)
        allowed = max(1, int((1.0 - self.config.sim_threshold) * n + 1e-9))
        best: _Cluster | None = None
        best_diff, best_params = n + 1, -1
        for c in candidates:
            diff = params = 0
            for t, u in zip(c.tokens, tokens, strict=True):
                if t == u:
                    continue
                if t == WILDCARD:
                    params += 1
                elif t[-4:] == _KV_WILDCARD and len(u) > len(t) - 3 and u.startswith(t[:-3]):
                    continue
                else:
                    diff += 1
            if diff < best_diff or (diff == best_diff and params > best_params):
                best, best_diff, best_params = c, diff, params
        return best if best_diff <= allowed else None

    def _create(self, tokens: list[str], leaf: tuple[str, ...], size: int = 1,
                cid: str | None = None) -> _Cluster:
        text = " ".join(tokens)
        cluster = _Cluster(cid or template_id(self.service, text), list(tokens), size, leaf,
                           self._tick, text=text)
        old = self._clusters.pop(cluster.id, None)
        if old is not None:  # same first template seen again after an eviction
            self._drop(old)
        self._clusters[cluster.id] = cluster
        members = self._leaves.setdefault(leaf, [])
        members.append(cluster)
        if len(members) > self.config.max_leaf_clusters:
            victim = min(members[:-1], key=lambda c: c.last)
            self._clusters.pop(victim.id, None)
            self._drop(victim)
        while len(self._clusters) > self.config.max_clusters:
            self._drop(self._clusters.popitem(last=False)[1])
        return cluster

    def _drop(self, c: _Cluster) -> None:
        c.alive = False
        members = self._leaves.get(c.leaf)
        if members is not None:
            members.remove(c)
            if not members:
                del self._leaves[c.leaf]

    def snapshot(self) -> bytes:
        """The state as compact JSON (for a changelog table); `restore` reads it back."""
        return orjson.dumps({
            "v": _SNAPSHOT_VERSION,
            "service": self.service,
            "clusters": [[c.id, c.tokens, c.size, c.leaf] for c in self._clusters.values()],
        })

    def restore(self, data: bytes) -> None:
        """Replace the state with a `snapshot`; ids and templates come back unchanged."""
        doc = orjson.loads(data)
        if doc.get("v") != _SNAPSHOT_VERSION:
            raise ValueError(f"unknown template snapshot version {doc.get('v')!r}")
        self.__init__(str(doc["service"]), self.config)  # type: ignore[misc]
        for cid, tokens, size, leaf in doc["clusters"]:
            leaf = tuple(leaf)
            for depth in range(1, len(leaf)):
                if leaf[depth] != WILDCARD:
                    self._children.setdefault(leaf[:depth], set()).add(leaf[depth])
            self._tick += 1
            self._create(list(tokens), leaf, int(size), str(cid))
