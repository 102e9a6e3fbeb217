"""Tamper evidence for the event log: per-partition hash chains, signed checkpoints in
`katagate.audit`, and a verifier that recomputes every chain from offset 0 (invariant 5 of
docs/ARCHITECTURE.md). See audit/README.md."""

from audit.chain import ZERO_HEAD, LogRecord, canonical, chain_head, next_head
from audit.checkpoint import Checkpoint, sign, signature_valid
from audit.checkpointer import checkpoint_once, run_checkpointer
from audit.export import export_message
from audit.keys import AuditKey, load_or_create, load_public_key
from audit.settings import AuditSettings
from audit.verify import Finding, Report, verify

__all__ = [
    "ZERO_HEAD", "AuditKey", "AuditSettings", "Checkpoint", "Finding", "LogRecord", "Report",
    "canonical", "chain_head", "checkpoint_once", "export_message", "load_or_create",
    "load_public_key", "next_head", "run_checkpointer", "sign", "signature_valid", "verify",
]
