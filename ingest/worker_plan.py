"""What each SMTP worker of `katagate ingest run` with `processes` > 1 is given (pure; the
processes are ingest/workers.py's): the port, a name of its own, a loopback metrics listener
only its supervisor reads, and its share of the stage's caps.

What each worker holds is the stage's, so it is divided, rounded up: `data_budget_bytes`
sizes the stage's memory (deploy/k8s/ingest.yaml; a share too small for the largest message is
refused at start, IngestSettings._shares), `verify_concurrency` and `verify_cache_size` what it
asks of the next hop and keeps. The session caps are not divided: the workers count their
sessions together (ingest/shared_counts.py).
"""

from __future__ import annotations

from katagate.eventlog.listen import LOOPBACK
from katagate.ingest.settings import IngestSettings

MiB = 1024 * 1024
INSTANCE_ID_MAX = 100  # IngestSettings.instance_id's pattern


def share(total: int, count: int) -> int:
    """`total` divided among `count`, rounded up: at least 1 each."""
    return max(1, -(-total // count))


def worker_instance(instance_id: str, index: int) -> str:
    """A worker's instance id (its producers' and its events' name): the stage's, with the
    worker's index, the stage's shortened if the whole would be over the pattern's 100."""
    suffix = f"-p{index}"
    return instance_id[:INSTANCE_ID_MAX - len(suffix)] + suffix


def worker_env(settings: IngestSettings, index: int, host: str, port: int) -> dict[str, str]:
    """The `KATAGATE_INGEST_*` variables worker `index` runs with, over the stage's own."""
    count = settings.processes
    # Settings check that each share holds the largest message (IngestSettings._shares).
    budget = max(share(settings.data_budget_bytes, count), settings.max_message_bytes, MiB)
    return {
        "KATAGATE_INGEST_PROCESSES": "1",
        "KATAGATE_INGEST_HOST": host,
        "KATAGATE_INGEST_PORT": str(port),
        "KATAGATE_INGEST_INSTANCE_ID": worker_instance(settings.instance_id, index),
        "KATAGATE_INGEST_METRICS_HOST": LOOPBACK,
        "KATAGATE_INGEST_METRICS_PORT": "0",
        "KATAGATE_INGEST_DATA_BUDGET_BYTES": str(budget),
        "KATAGATE_INGEST_VERIFY_CONCURRENCY": str(share(settings.verify_concurrency, count)),
        "KATAGATE_INGEST_VERIFY_CACHE_SIZE": str(max(100, share(settings.verify_cache_size,
                                                               count))),
    }
