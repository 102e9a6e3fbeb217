"""The product's own words for values an administrator sees, shared by the CLI and the console
(the windows of the product documentation name them so)."""

# "If KATA detected an event", in a rule's KATA protection section.
ACTION_LABELS = {"delete": "Delete message", "reject": "Reject", "skip": "Skip"}

# The KATA connection state window's states (docs/ARCHITECTURE.md, The KATA connection).
CONNECTION_STATES = {
    "not_configured": "Not configured",
    "connecting": "Connecting",
    "awaiting_confirmation": "Awaiting confirmation",
    "connected": "Connected",
    "rejected": "Rejected by KATA",
    "certificate_mismatch": "Certificate mismatch",
    "unreachable": "Unreachable",
    "error": "Error",
}
