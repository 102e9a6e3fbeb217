"""Pure folds from events to views (connection state, quarantine usage, timelines, counters)."""
