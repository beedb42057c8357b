"""Seeded authentication traffic: benign days and attacks, as contract log events.

Each seed draws its own fleet (service names, login routes, the words its services use for
actions and outcomes, user population, office NAT addresses, rates), so evaluating on seeds
the rules were not tuned on is evaluating on fleets they have not seen.

Benign traffic holds what trips naive rules: typos (1-2 failures then a success), password
resets (up to 6 failures, a reset, a success), new devices (a known user from a new
address, sometimes with an MFA step), offices behind one NAT address (a morning wave of
logins with their typos), a misconfigured integration failing once a minute for hours,
mobile clients retrying an expired password a few times, marketing signups (a campaign hour
at ten times the signup rate, "e-mail taken" failures, then first logins) and scrapers
rate-limited on the search route.

Attacks: credential stuffing (2-15 attempts a second from 2-8 addresses over a leaked list
of user names, 1-3 % succeed, the gateway answers 429 to most after about 90 s) and brute
force (one account, often an admin, 0.3-5 attempts a second from 1-20 addresses, sometimes
succeeding at the end). ``Attack`` records when each starts and its addresses and users.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

DAY_S = 86_400
_SERVICES = ("shop", "accounts", "identity", "gateway", "portal", "bank-web", "crm", "sso")
_LOGIN_ROUTES = ("/login", "/api/v1/auth/login", "/signin", "/oauth/token", "/api/session")
_LOGIN_ACTIONS = ("login", "user.login", "signin", "authenticate", "session.create")
_FAIL_WORDS = ("failure", "failed", "denied", "invalid")
_OK_WORDS = ("success", "ok", "succeeded", "allowed")


@dataclass
class Attack:
    """One attack of a scenario: what it is, when it starts (epoch ms), who is involved."""

    kind: str  # credential_stuffing | brute_force
    start_ms: int
    end_ms: int
    ips: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)


@dataclass
class Fleet:
    """One seed's world: its services and vocabulary, users, their addresses."""

    rng: random.Random
    service: str
    route: str
    action: str
    fail: str
    ok: str
    users: list[str]
    admins: list[str]
    homes: dict[str, list[str]]
    offices: list[str]
    logins_per_s: float  # mean over the day (diurnal)

    def ip(self) -> str:
        r = self.rng
        return f"{r.choice((31, 46, 77, 88, 92, 151, 185, 203))}.{r.randrange(256)}." \
               f"{r.randrange(256)}.{r.randrange(1, 255)}"


def fleet(seed: int) -> Fleet:
    """The fleet of one seed."""
    rng = random.Random(seed)
    n_users = rng.randrange(800, 5000)
    users = [f"{rng.choice(('u', 'user', 'c', 'cust'))}{i:05d}" for i in range(n_users)]
    admins = rng.sample(["admin", "root", "admin-ops", "ops-maria", "sre-li", "db-admin"],
                        k=rng.randrange(2, 5))
    offices = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.1" for _ in range(3)]
    f = Fleet(rng=rng, service=rng.choice(_SERVICES), route=rng.choice(_LOGIN_ROUTES),
              action=rng.choice(_LOGIN_ACTIONS), fail=rng.choice(_FAIL_WORDS),
              ok=rng.choice(_OK_WORDS), users=users, admins=admins, homes={}, offices=offices,
              logins_per_s=rng.uniform(0.15, 0.5))
    for u in users + admins:
        f.homes[u] = [f.ip() for _ in range(rng.randrange(1, 4))]
    return f


def event(f: Fleet, ts_ms: int, user: str, ip: str, action: str, result: str,
          status: int, route: str | None = None, n: list[int] | None = None) -> dict[str, Any]:
    """One contract log event of an authentication step."""
    words = {"success": f.ok, "failure": f.fail, "rate_limited": "rate_limited"}
    outcome = words.get(result, result)
    msg = {"success": f"{action} succeeded for user {user} from {ip}",
           "failure": f"{action} failed for user {user} from {ip} invalid credentials",
           "rate_limited": f"{action} throttled for {ip}"}.get(result, f"{action} {result}")
    counter = n if n is not None else [0]
    counter[0] += 1
    return {"ts": ts_ms, "service": f.service, "level": "INFO" if result == "success" else "WARN",
            "message": msg, "event_id": f"{f.service}-{ts_ms}-{counter[0]}",
            "http": {"method": "POST", "route": route or f.route, "status": status},
            "user": {"id": user, "ip": ip, "action": action, "outcome": outcome}}


def _login(f: Fleet, t: float, user: str, ip: str, ok: bool, out: list[dict[str, Any]]) -> None:
    out.append(event(f, int(t * 1000), user, ip, f.action, "success" if ok else "failure",
                     200 if ok else 401))


def benign(seed: int, start_s: float, duration_s: float = DAY_S) -> list[dict[str, Any]]:
    """A benign stretch of traffic (a day by default), sorted by time."""
    f = fleet(seed)
    r = random.Random(seed * 7919 + 1)
    out: list[dict[str, Any]] = []
    t = start_s
    while t < start_s + duration_s:  # ordinary logins, diurnal rate
        hour = ((t - start_s) % DAY_S) / 3600
        rate = f.logins_per_s * (1 + 0.8 * math.sin((hour - 8) / 24 * 2 * math.pi))
        t += r.expovariate(max(rate, 0.02))
        user = r.choice(f.users) if r.random() > 0.01 else r.choice(f.admins)
        homes = f.homes[user]
        p = r.random()
        if p < 0.05 and user not in f.admins:  # new device, sometimes with MFA
            ip = f.ip()
            homes.append(ip)
            if r.random() < 0.5:
                out.append(event(f, int(t * 1000), user, ip, "mfa.verify", "success", 200,
                                 route="/mfa"))
            _login(f, t + 2, user, ip, True, out)
        elif p < 0.10:  # typos
            ip = r.choice(homes)
            for k in range(r.randrange(1, 3)):
                _login(f, t + 4 * k, user, ip, False, out)
            _login(f, t + 12, user, ip, True, out)
        elif p < 0.115 and user not in f.admins:  # forgot the password: fails, resets
            ip = r.choice(homes)
            n = r.randrange(3, 7)
            for k in range(n):
                _login(f, t + 6 * k, user, ip, False, out)
            out.append(event(f, int((t + 6 * n + 60) * 1000), user, ip, "password.reset",
                             "success", 200, route="/password/reset"))
            _login(f, t + 6 * n + 120, user, ip, True, out)
        elif p < 0.12:  # a mobile client retrying an old password
            ip = r.choice(homes)
            for k in range(r.randrange(2, 6)):
                _login(f, t + 3 * k, user, ip, False, out)
        else:
            _login(f, t, user, r.choice(homes), True, out)
    for office in f.offices:  # morning waves behind office NAT addresses
        day0 = start_s - start_s % DAY_S
        for d in range(int(duration_s // DAY_S) + 1):
            wave = day0 + d * DAY_S + 8.5 * 3600
            if not start_s <= wave < start_s + duration_s:
                continue
            for user in r.sample(f.users, k=min(len(f.users), r.randrange(50, 250))):
                t0 = wave + r.uniform(0, 1800)
                if r.random() < 0.07:
                    _login(f, t0, user, office, False, out)
                _login(f, t0 + 8, user, office, True, out)
    integ = "svc-reporting"  # a rotated password nobody updated: one failure a minute
    t0 = start_s + r.uniform(0, duration_s / 2)
    for k in range(int(min(4 * 3600, duration_s / 2) // 60)):
        _login(f, t0 + 60 * k + r.uniform(0, 5), integ, "10.0.9.14", False, out)
    camp = start_s + r.uniform(0, max(0.0, duration_s - 3600))  # a marketing campaign hour
    t = camp
    while t < camp + 3600:
        t += r.expovariate(f.logins_per_s * 10)
        ip, new_user = f.ip(), f"new{r.randrange(10**7):07d}"
        if r.random() < 0.15:
            out.append(event(f, int(t * 1000), new_user, ip, "signup", "failure", 409,
                             route="/signup"))
            continue
        out.append(event(f, int(t * 1000), new_user, ip, "signup", "success", 201,
                         route="/signup"))
        _login(f, t + 30, new_user, ip, True, out)
    t = start_s + r.uniform(0, duration_s / 2)
    scraper = f.ip()
    for k in range(2000):  # a scraper rate-limited on search (not an auth route)
        out.append({"ts": int((t + k * 0.5) * 1000), "service": f.service, "level": "WARN",
                    "message": "rate limited", "event_id": f"scr-{seed}-{k}",
                    "http": {"method": "GET", "route": "/search", "status": 429}})
        if k % 40 == 0:
            out[-1]["user"] = {"ip": scraper, "action": "search"}
    for a in f.admins:  # admins log in from their usual addresses
        for d in range(max(1, int(duration_s // DAY_S))):
            for _ in range(r.randrange(2, 6)):
                tt = start_s + d * DAY_S + r.uniform(0, min(duration_s, DAY_S))
                _login(f, tt, a, r.choice(f.homes[a]), True, out)
    out.sort(key=lambda e: e["ts"])
    return out


def _attacker_ip(r: random.Random) -> str:
    return f"{r.choice((5, 45, 91, 103, 179, 194))}.{r.randrange(256)}.{r.randrange(256)}." \
           f"{r.randrange(1, 255)}"


def credential_stuffing(seed: int, start_s: float) -> tuple[list[dict[str, Any]], Attack]:
    """A stuffing run: a leaked list tried from a few addresses, then rate-limited."""
    f, r = fleet(seed), random.Random(seed * 104_729 + 2)
    rate, n_ips = r.uniform(2, 15), r.randrange(2, 9)
    ips = [_attacker_ip(r) for _ in range(n_ips)]
    leaked = r.sample(f.users, k=min(len(f.users), 600)) + [f"x{r.randrange(10**6)}"
                                                             for _ in range(400)]
    r.shuffle(leaked)
    duration = r.uniform(300, 900)
    limited_after = r.uniform(60, 120)
    out: list[dict[str, Any]] = []
    a = Attack("credential_stuffing", int(start_s * 1000), int((start_s + duration) * 1000))
    t, i = start_s, 0
    while t < start_s + duration:
        ip, user = r.choice(ips), leaked[i % len(leaked)]
        i += 1
        if t - start_s > limited_after and r.random() < 0.8:
            out.append(event(f, int(t * 1000), user, ip, f.action, "rate_limited", 429))
        else:
            _login(f, t, user, ip, r.random() < 0.02, out)
        a.ips.add(ip)
        a.users.add(user)
        t += r.expovariate(rate)
    return out, a


def brute_force(seed: int, start_s: float) -> tuple[list[dict[str, Any]], Attack]:
    """Guessing one account's password, from one or many addresses."""
    f, r = fleet(seed), random.Random(seed * 15_485_863 + 3)
    target = r.choice(f.admins) if r.random() < 0.5 else r.choice(f.users)
    rate, n_ips = r.uniform(0.3, 5), r.choice((1, 1, 3, 10, 20))
    ips = [_attacker_ip(r) for _ in range(n_ips)]
    duration = r.uniform(180, 900)
    out: list[dict[str, Any]] = []
    a = Attack("brute_force", int(start_s * 1000), int((start_s + duration) * 1000),
               users={target})
    t = start_s
    while t < start_s + duration:
        ip = r.choice(ips)
        _login(f, t, target, ip, False, out)
        a.ips.add(ip)
        t += r.expovariate(rate)
    if r.random() < 0.3:
        _login(f, t, target, r.choice(ips), True, out)
    return out, a


def scenario(seed: int, start_s: float = 1_767_225_600.0,
             duration_s: float = 4 * 3600) -> tuple[list[dict[str, Any]], list[Attack]]:
    """Benign traffic with one stuffing run and one brute force at random times."""
    r = random.Random(seed * 31 + 5)
    events = benign(seed, start_s, duration_s)
    s1 = start_s + r.uniform(0.3, 0.45) * duration_s  # after the rules' learning hour
    s2 = start_s + r.uniform(0.6, 0.8) * duration_s
    ev1, a1 = credential_stuffing(seed, s1)
    ev2, a2 = brute_force(seed, s2)
    events = sorted(events + ev1 + ev2, key=lambda e: e["ts"])
    return events, [a1, a2]
