-- Metric points keep their Kafka partition and offset, as logs do: after a crash the ingest
-- stage reads back which offsets past the committed one already landed and does not write
-- them again (sinks/clickhouse/offsets.py).
ALTER TABLE {db}.metric_points
    ADD COLUMN IF NOT EXISTS kafka_partition UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS kafka_offset UInt64 DEFAULT 0;
