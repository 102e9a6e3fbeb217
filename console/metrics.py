"""The console's Prometheus metrics (and the process's CPU and memory), served on their own
listener (`metrics_host:metrics_port`, `run.py`), not beside the pages."""

from prometheus_client import Counter

SIGN_INS = Counter(
    "katagate_console_sign_ins_total",
    "Password sign-ins by outcome: ok, refused (wrong name or password), rate_limited",
    ["outcome"],
)
for _outcome in ("ok", "refused", "rate_limited"):
    SIGN_INS.labels(_outcome)  # present at 0, so a first failure is an increase
