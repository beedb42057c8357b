-- Accuracy measured on lines that carry their ground truth (attrs.label on a log event):
-- grouping accuracy (Loghub's GA) and category / priority accuracy, per service and period.
ALTER TABLE {db}.categorisation_accuracy
    ADD COLUMN IF NOT EXISTS labelled_lines UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS grouping_accuracy Nullable(Float64),
    ADD COLUMN IF NOT EXISTS labelled_category_accuracy Nullable(Float64),
    ADD COLUMN IF NOT EXISTS labelled_priority_accuracy Nullable(Float64);
