"""Synthetic labelled log sets from generic printf templates: a check that owes nothing to Loghub.

Each set draws ``n_templates`` templates of 2 to 10 words from a small vocabulary, a quarter of
the words being slots of one of 19 kinds (numbers, durations, IPs, hex, UUIDs, user names,
e-mails, paths, URLs, host names, random ids, multi-word quoted search queries with non-ASCII
words, SQL, ``key=value``, class names), and ~30 % of the templates being one-word siblings of
another ("connection closed …" / "connection reset …"). Lines follow a Zipf law over templates.
The ground truth of a line is its template with every slot ``<*>``; the key of a
``key=value`` slot is part of the template.

>>> s = generate(1, n_templates=5, n_lines=3)
>>> (s.name, len(s.contents), sorted(s.truth)[:3])
('synthetic-1', 3, [1, 2, 3])
"""

from __future__ import annotations

import random
import string
import uuid

from evaluation.loghub import System

_VERBS = [
    "started", "stopped", "failed", "completed", "opened", "closed", "reset", "accepted",
    "rejected", "created", "deleted", "updated", "loaded", "saved", "sent", "received",
    "scheduled", "cancelled", "retried", "skipped", "expired", "renewed"
]
_NOUNS = [
    "connection", "session", "request", "job", "task", "worker", "cache", "index", "file",
    "socket", "channel", "stream", "query", "batch", "lease", "lock", "token", "order", "payment",
    "user", "node", "replica", "snapshot", "segment", "buffer"
]
_WORDS = [
    "the", "for", "from", "to", "with", "on", "at", "in", "of", "by", "after", "before", "while",
    "during", "via", "into"
]
_ADJ = [
    "slow", "fast", "remote", "local", "primary", "secondary", "stale", "fresh", "pending",
    "active", "idle", "invalid"
]
_NAMES = [f + s for f in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
                          "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "wendy")
          for s in ("", "_admin", ".ops", "x")]
_QUERY = [
    "red", "shoes", "café", "blue", "jacket", "naïve", "lamp", "東京", "kettle", "tent", "über",
    "mug", "crème", "watch", "desk"
]
_TABLES = ["orders", "users", "products", "stock", "charges", "sessions", "events"]
KINDS = ("int", "float", "dur", "ip", "ipport", "hex", "uuid", "user", "email", "path", "url",
         "host", "reqid", "word_id", "query", "sql", "kv_uid", "kv_status", "class")


def _hosts() -> list[str]:
    out = []
    for i in range(300):
        r = random.Random(i)
        out.append("".join(r.choices(string.ascii_lowercase, k=r.randint(4, 9)))
                   + r.choice([".example.com", ".local", ".net", ""]))
    return out


_HOSTS = _hosts()


def _slot(kind: str, r: random.Random) -> str:
    """A value for one slot kind."""
    if kind == "int":
        return str(r.randint(0, 10 ** r.randint(1, 6)))
    if kind == "float":
        return f"{r.random() * 100:.{r.randint(1, 3)}f}"
    if kind == "dur":
        return f"{r.randint(1, 999)}{r.choice(['ms', 's', 'us'])}"
    if kind in ("ip", "ipport"):
        ip = ".".join(str(r.randint(1, 254)) for _ in range(4))
        return ip if kind == "ip" else f"{ip}:{r.randint(1024, 65535)}"
    if kind == "hex":
        return f"{r.getrandbits(64):x}"
    if kind == "uuid":
        return str(uuid.UUID(int=r.getrandbits(128)))
    if kind == "user":
        return r.choice(_NAMES)
    if kind == "email":
        return f"{r.choice(_NAMES)}@{r.choice(_HOSTS[:20])}.org"
    if kind == "path":
        return "/" + "/".join(r.choice(_NOUNS) for _ in range(r.randint(1, 4)))
    if kind == "url":
        return f"https://{r.choice(_HOSTS)}/{r.choice(_NOUNS)}"
    if kind == "host":
        return r.choice(_HOSTS)
    if kind == "reqid":
        return "".join(r.choices(string.ascii_letters + string.digits, k=12))
    if kind == "word_id":
        return "".join(r.choices(string.ascii_lowercase, k=r.randint(6, 10)))
    if kind == "query":
        return '"' + " ".join(r.choice(_QUERY) for _ in range(r.randint(1, 3))) + '"'
    if kind == "sql":
        cols = ", ".join(r.sample(["id", "name", "price", "qty", "ts"], r.randint(1, 3)))
        return f"SELECT {cols} FROM {r.choice(_TABLES)} WHERE id = {r.randint(1, 9999)}"
    if kind.startswith("kv_"):
        return f"{kind[3:]}={r.randint(0, 999)}"
    if kind == "class":
        return "".join(r.choice(_NOUNS).title() for _ in range(3))
    raise KeyError(kind)


def _templates(r: random.Random, n: int) -> list[list[str]]:
    out: list[list[str]] = []
    while len(out) < n:
        if out and r.random() < 0.3:  # a sibling: one constant word changed
            base = list(r.choice(out))
            words = [i for i, t in enumerate(base) if not t.startswith("{")]
            if words:
                i = r.choice(words)
                pool = _VERBS if base[i] in _VERBS else _NOUNS if base[i] in _NOUNS else _ADJ
                base[i] = r.choice([w for w in pool if w != base[i]] or ["other"])
                if base not in out:
                    out.append(base)
                continue
        toks = []
        for _ in range(r.randint(2, 10)):
            x = r.random()
            if x < 0.25:
                toks.append("{" + r.choice(KINDS) + "}")
            else:
                toks.append(r.choice(_VERBS if x < 0.45 else _NOUNS if x < 0.7
                                     else _ADJ if x < 0.8 else _WORDS))
        if r.random() < 0.3:
            toks.insert(0, r.choice(_NOUNS).capitalize() + ":")
        if not any(t.startswith("{") for t in toks):
            toks.append("{" + r.choice(KINDS) + "}")
        if toks not in out:
            out.append(toks)
    return out


def generate(seed: int, n_templates: int = 60, n_lines: int = 6000) -> System:
    """One seeded synthetic set as a `System` (ground truth in the scorer's format)."""
    r = random.Random(seed)
    templates = _templates(r, n_templates)
    weights = [1 / (k + 1) ** 1.1 for k in range(len(templates))]
    contents, truth = [], {}
    for line_id in range(1, n_lines + 1):
        t = r.choices(templates, weights)[0]
        contents.append(" ".join(_slot(x[1:-1], r) if x.startswith("{") else x for x in t))
        gt = " ".join("<*>" if x.startswith("{") else x for x in t)
        truth[line_id] = (gt, gt)
    return System(f"synthetic-{seed}", contents, truth)
