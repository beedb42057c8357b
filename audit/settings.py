"""Audit settings (``LOGWARDEN_AUDIT_*``)."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr


class AuditSettings(BaseModel):
    """Whether the API and CLI audit, and the key of the chain's HMAC."""

    model_config = {"frozen": True}

    enabled: bool = True  # LOGWARDEN_AUDIT_ENABLED
    # LOGWARDEN_AUDIT_KEY: HMAC key of the chain. Without it the chain is plain SHA-256:
    # it still shows an edit or a deletion, but one who can write the table and knows the
    # scheme could rewrite every later row; with a key kept away from ClickHouse, they cannot.
    key: SecretStr = SecretStr("")
