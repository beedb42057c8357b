"""One-time SMS reply codes: ``Reply ACK K3F7QZ``.

A code is random (not derived from the alert, so it cannot be computed from its labels),
issued per message to the phone numbers it is sent to, spent by the first valid reply, and
expires after ``ttl``. The alert manager keeps them in its ``codes`` table (code -> ReplyCode)
and is the only writer; the SMS webhook reads them only to answer the sender at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Container, MutableMapping

from pydantic import BaseModel, ConfigDict

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base32: unambiguous to read aloud
LENGTH = 6  # 32**6 ~ 1e9 codes; a code is valid only from its phones, once, for hours


class ReplyCode(BaseModel):
    """Who may use a code, for which alert, until when (epoch s)."""

    model_config = ConfigDict(frozen=True)

    code: str
    fingerprint: str
    phones: list[str]
    issued_at: float
    expires_at: float

    def refusal(self, phone: str, now: float) -> str:
        """Why ``phone`` may not use this code at ``now`` ("" when it may)."""
        if now >= self.expires_at:
            return "expired"
        if normalise_phone(phone) not in {normalise_phone(p) for p in self.phones}:
            return "not sent to this number"
        return ""


def normalise_phone(number: str) -> str:
    """``+1 (555) 010-0001`` and ``+15550100001`` compare equal."""
    return "".join(c for c in number if c.isdigit() or c == "+")


def new_code(taken: Container[str]) -> str:
    """A fresh random code not in ``taken``."""
    while True:
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        if code not in taken:
            return code


def issue(codes: MutableMapping[str, bytes], fingerprint: str, phones: list[str], now: float,
          ttl_s: float) -> str:
    """A new code for ``fingerprint``, usable from ``phones`` for ``ttl_s``, written to
    ``codes`` (code -> ReplyCode JSON)."""
    code = new_code(codes)
    rc = ReplyCode(code=code, fingerprint=fingerprint, phones=phones, issued_at=now,
                   expires_at=now + ttl_s)
    codes[code] = rc.model_dump_json().encode()
    return code


def spend(codes: MutableMapping[str, bytes], code: str, phone: str,
          now: float) -> tuple[str | None, str]:
    """(the alert's fingerprint, "") for a valid reply, and the code is gone; else
    (None, why)."""
    raw = codes.get(code.upper())
    if raw is None:
        return None, "unknown code"
    rc = ReplyCode.model_validate_json(raw)
    why = rc.refusal(phone, now)
    if why:
        return None, why
    del codes[rc.code]
    return rc.fingerprint, ""


def prune(codes: MutableMapping[str, bytes], firing: Container[str], now: float) -> None:
    """Drop expired codes and those of alerts no longer firing (``firing``: fingerprints)."""
    for code, raw in list(codes.items()):
        rc = ReplyCode.model_validate_json(raw)
        if now >= rc.expires_at or rc.fingerprint not in firing:
            del codes[code]
