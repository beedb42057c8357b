"""OpenTelemetry ingest: OTLP/HTTP logs and metrics decoded and mapped onto the ingest contract.

Pure functions, no I/O: ``decode`` turns a request body into its protobuf message,
``logs`` and ``metrics`` map it to contract JSON messages keyed by service. The receiver
is ``web/otlp.py``; the Kafka side is ``streams/otlp_sink.py``.
"""
