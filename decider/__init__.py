"""The decider: admission (the quarantine ledger's single writer), decisions (one `decide` per
message, deadlines as data) and apply (the action carried out); pure cores and thin shells
(docs/ARCHITECTURE.md, "How a stage runs")."""
