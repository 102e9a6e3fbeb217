"""Duplicates and losses at the next hop across a graceful stop and a crash of each stage:
`python -m bench.restarts` (bench/restarts/__main__.py says how it counts)."""
