"""API tokens with roles: viewer < responder < security < admin (``web.access``), stored as
SHA-256 hashes in a JSON file.

A token is 32 random bytes (``lw_`` + urlsafe base64), so a plain SHA-256 suffices: there
is nothing to brute-force that a slow hash would protect. The file lives in the data
directory (``api_tokens.json``, mode 0600) and is re-read when it changes, so
``logwarden token create`` works while the worker (which holds chDB) is running, and a
cluster shares it as a mounted secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from web.http import ApiError

ROLES = ("viewer", "responder", "security", "admin")  # web/access.py: what security adds
_RANK = {role: i for i, role in enumerate(ROLES)}


class AuthError(ApiError):
    """401 (no or unknown token) or 403 (a token whose role is too low)."""


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's name and role (``anonymous`` without a token)."""

    name: str
    role: str

    def allows(self, role: str) -> bool:
        """True when this principal's role is ``role`` or above."""
        return _RANK.get(self.role, -1) >= _RANK[role]


ANONYMOUS = Principal("anonymous", "")


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The token file: create tokens, look one up by its hash (cached by file mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._entries: list[dict[str, Any]] = []

    def entries(self) -> list[dict[str, Any]]:
        """Every stored token (name, role, hash, created)."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return []
        if mtime != self._mtime:
            self._entries = list(json.loads(self.path.read_text() or "[]"))
            self._mtime = mtime
        return self._entries

    def create(self, name: str, role: str) -> str:
        """A new token for ``role``; only its hash is written. Returns the token once."""
        if role not in _RANK:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        token = "lw_" + secrets.token_urlsafe(32)
        entries = [e for e in self.entries() if e["name"] != name]
        entries.append({"name": name, "role": role, "sha256": hash_token(token),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
        return token

    def lookup(self, token: str) -> Principal | None:
        """The principal of ``token``, or None when it is unknown."""
        digest = hash_token(token)
        for e in self.entries():
            if hmac.compare_digest(digest, str(e["sha256"])):
                return Principal(str(e["name"]), str(e["role"]))
        return None


@dataclass(frozen=True)
class AuthPolicy:
    """Which requests need a token: writes always; reads only when ``read_requires_token``."""

    tokens: TokenStore | None
    read_requires_token: bool = False

    def principal(self, request: web.Request) -> Principal:
        """The request's principal from ``Authorization: Bearer``; 401 on an unknown token."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return ANONYMOUS
        found = self.tokens.lookup(header[7:].strip()) if self.tokens else None
        if found is None:
            raise AuthError(401, "unauthorized", "the API token is unknown or revoked")
        return found

    def require(self, request: web.Request, role: str) -> Principal:
        """The principal if it has ``role`` or above, else 401/403 with a clear message."""
        who = self.principal(request)
        if role == "viewer" and not self.read_requires_token:
            return who
        if who is ANONYMOUS:
            raise AuthError(401, "unauthorized",
                            f"this needs a {role} token: send Authorization: Bearer <token> "
                            f"(create one with `logwarden token create --role {role}`)")
        if not who.allows(role):
            raise AuthError(403, "forbidden",
                            f"token {who.name!r} has role {who.role}; this needs {role}")
        return who


POLICY_KEY: web.AppKey[AuthPolicy] = web.AppKey("auth_policy", AuthPolicy)


def require(request: web.Request, role: str) -> Principal:
    """Check the app's policy for ``role`` (for handlers in other modules, e.g. alerts)."""
    policy = request.app.get(POLICY_KEY) or AuthPolicy(None)
    return policy.require(request, role)
