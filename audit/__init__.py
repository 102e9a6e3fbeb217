"""Tamper evidence for the event log: per-partition hash chains, signed checkpoints in
`katagate.audit`, and a verifier that recomputes every chain from offset 0 (invariant 5 of
docs/ARCHITECTURE.md). See audit/README.md."""

from katagate.audit.chain import ZERO_HEAD, LogRecord, canonical, chain_head, next_head
from katagate.audit.checkpoint import Checkpoint, sign, signature_valid
from katagate.audit.checkpointer import checkpoint_once, run_checkpointer
from katagate.audit.export import export_message
from katagate.audit.keys import AuditKey, load_or_create, load_public_key
from katagate.audit.settings import AuditSettings
from katagate.audit.verify import Finding, Report, verify

__all__ = [
    "ZERO_HEAD", "AuditKey", "AuditSettings", "Checkpoint", "Finding", "LogRecord", "Report",
    "canonical", "chain_head", "checkpoint_once", "export_message", "load_or_create",
    "load_public_key", "next_head", "run_checkpointer", "sign", "signature_valid", "verify",
]
