"""The SMTP edge: validates sessions, matches rules, and answers 250 only after the raw message
and MessageReceived are durable in Kafka (ingest/writer.py)."""
