"""Views rebuilt from the log: pure folds (connection state, quarantine usage, per-message
timelines, counters), their one canonical JSON form, the live runner with its HTTP API and
snapshot, and the audit replay. Imports `schemas`, `eventlog` and `access` (its read tokens),
never another stage."""
