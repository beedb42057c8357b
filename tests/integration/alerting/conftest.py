"""Fixtures for the alerting channel tests (local SMTP, Slack and Twilio peers)."""

from peers_fixtures import peer, smtp_server  # noqa: F401
