"""Fixtures for the alerting channel tests (local SMTP, Slack and Twilio peers)."""

from alerting_peers import peer, smtp_server  # noqa: F401
