"""PII redaction at ingest: rules (``rules``), the redactor (``redact``), settings and YAML."""
