"""A seeded corpus of PII forms, each embedded in several log-line contexts, and of
look-alikes that must stay as they are (ids, times, versions, hashes, prices)."""

from __future__ import annotations

import random
import string

CONTEXTS = ("{x}", "user {x} logged in", "contact: {x}.", "({x})", "value={x} ok",
            '{{"field": "{x}"}}', "to <{x}>, retry 3", "failed for {x}; giving up")


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A card number with ``prefix``, ``length`` digits, and a valid check digit."""
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def _group(number: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(number[i:i + n])
        i += n
    return sep.join(out)


def emails(rng: random.Random) -> list[str]:
    locals_ = ["alice", "bob.smith", "j.doe+alerts", "user_42", "X.Y-Z", "first.last99",
               "o'neil", "a"]
    domains = ["example.com", "mail.example.co.uk", "corp-mail.example.org", "EXAMPLE.IO",
               "sub.domain.example.travel"]
    return [f"{lp}{rng.randrange(100) if i % 2 else ''}@{d}" for i, lp in enumerate(locals_)
            for d in domains if "'" not in lp]


def ipv4s(rng: random.Random) -> list[str]:
    fixed = ["0.0.0.0", "255.255.255.255", "10.0.0.1", "192.168.1.254", "172.16.31.7",
             "8.8.8.8"]
    return fixed + [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(30)]


def ipv6s(rng: random.Random) -> list[str]:
    fixed = ["2001:db8::8a2e:370:7334", "::1", "fe80::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
             "2001:db8:0:0:1:0:0:1", "fe80::21a:2bff:fe3c:4d5e", "::ffff:0:1"]
    rand = [":".join(f"{rng.randrange(65536):x}" for _ in range(8)) for _ in range(10)]
    return fixed + rand


def cards(rng: random.Random) -> list[str]:
    out = []
    for prefix, length, sizes in [("4", 16, (4, 4, 4, 4)), ("51", 16, (4, 4, 4, 4)),
                                  ("37", 15, (4, 6, 5)), ("6011", 16, (4, 4, 4, 4)),
                                  ("35", 16, (4, 4, 4, 4)), ("4", 13, (4, 4, 5)),
                                  ("62", 19, (4, 4, 4, 4, 3))]:
        for _ in range(4):
            n = luhn_complete(prefix, length, rng)
            out += [n, _group(n, sizes, " "), _group(n, sizes, "-")]
    return out


def phones(rng: random.Random) -> list[str]:
    out = []
    for _ in range(6):
        a, b, c = rng.randrange(200, 999), rng.randrange(200, 999), rng.randrange(10_000)
        out += [f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}",
                f"+1 {a} {b} {c:04d}", f"+1-{a}-{b}-{c:04d}", f"+1{a}{b}{c:04d}"]
        out += [f"+44 20 {rng.randrange(7000, 7999)} {rng.randrange(10_000):04d}",
                f"+49 30 {rng.randrange(10**7, 10**8)}",
                f"0{rng.randrange(1, 9)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} "
                f"{rng.randrange(10, 99)} {rng.randrange(10, 99)}",
                f"+33 6 {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} "
                f"{rng.randrange(10, 99)}"]
    return out


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits
           ) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def secrets_(rng: random.Random) -> list[tuple[str, str]]:
    """(line fragment, the secret inside it that must disappear)."""
    out = []
    for _ in range(5):
        jwt = (f"eyJ{_token(rng, 20)}.eyJ{_token(rng, 30)}."
               f"{_token(rng, 43, string.ascii_letters + string.digits + '-_')}")
        opaque = _token(rng, 32)
        out += [(f"Authorization: Bearer {jwt}", jwt), (f"bearer {opaque}", opaque),
                (f"Authorization: Basic {opaque}==", opaque)]
        key = _token(rng, 24)
        out += [(f"api_key={key}", key), (f'"apiKey": "{key}"', key),
                (f"password={key}", key), (f"client_secret: {key}", key),
                (f"X-Auth-Token: {key}", key), (f"token={key}&next=1", key),
                (f"DB_PASSWORD='{key}'", key), (f"private_key = {key}", key)]
        aws = "AKIA" + _token(rng, 16, string.ascii_uppercase + string.digits)
        gh = "ghp_" + _token(rng, 36)
        stripe = "sk_live_" + _token(rng, 24)
        slack = "xoxb-" + "-".join(_token(rng, 12, string.digits) for _ in range(2)) + "-" + \
            _token(rng, 24)
        gl = "glpat-" + _token(rng, 20)
        out += [(f"using {aws} for s3", aws), (f"clone with {gh}", gh), (stripe, stripe),
                (f"slack {slack}", slack), (f"gitlab {gl}", gl), (jwt, jwt)]
    return out


LOOKALIKES = [
    "GET /cart user=1234 status=200 took 45ms",
    "2024-01-15T10:00:00Z job done",
    "started at 2024-01-15 10:00:00.123 UTC",
    "report for 15/01/2024 ready",
    "took 1234 ms, 1048576 bytes",
    "release v1.2.3 (build 20240115)",
    "upgrade from 1.2.3.4.5 to 1.2.3.4.6",
    "order 4242424242424241 shipped",  # fails Luhn: an id, not a card
    "item 1234567890 restocked",  # a bare run of digits is an id
    "trace 0af7651916cd43dd8448eb211c80319c span b7ad6b7169203331",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "request 550e8400-e29b-41d4-a716-446655440000 done",
    "listening on port 8080",
    "at 10:00:01 and 23:59:59",
    "price $1,234.56 charged",
    "password reset requested for account 42",
    "token expired, refreshing",
    "key rotation completed",
    "email sent to the user",
    "ping @channel and @here",
    "new device registered for account 42",
    "signup from campaign spring-2024",
    "authentication succeeded",
    "retry 3 of 5 after 250 ms",
    "queue depth 12345 (limit 100000)",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
]


def corpus(seed: int = 7) -> list[tuple[str, str, str]]:
    """(kind, line, the PII the redacted line must not hold), several contexts each."""
    rng = random.Random(seed)
    out: list[tuple[str, str, str]] = []
    singles = [("email", emails(rng)), ("ipv4", ipv4s(rng)), ("ipv6", ipv6s(rng)),
               ("card", cards(rng)), ("phone", phones(rng))]
    for kind, values in singles:
        for i, v in enumerate(values):
            for ctx in (CONTEXTS[i % len(CONTEXTS)], CONTEXTS[(i + 3) % len(CONTEXTS)]):
                out.append((kind, ctx.format(x=v), v))
    for i, (frag, secret) in enumerate(secrets_(rng)):
        out.append(("secret", CONTEXTS[i % len(CONTEXTS)].format(x=frag), secret))
    return out
