"""The metrics of ingest's SMTP workers as one stage's (ingest/workers.py): each worker serves
its own on a loopback port only its supervisor knows; a scrape of the supervisor's listener
reads them all and gives every series a `worker` label, so that a dashboard's sum() over the
stage is what it was with one process.

The merge is pure over the workers' texts (`merged`); `WorkerMetrics` fetches them.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

# Every worker is read at once, each within this: a scrape is answered well within the
# listener's 10 s request deadline however many workers hang.
SCRAPE_TIMEOUT_S = 3.0
MAX_AT_ONCE = 128  # two probes of 64 processes at most
MAX_BODY_BYTES = 16 * 1024 * 1024
# A counter's and a histogram's creation time: the time a worker started, which no panel uses
# and which would be one more series per series.
_CREATED = "_created"


def merged(texts: Mapping[str, str]) -> list[Metric]:
    """The families of every worker's exposition (worker label -> its text), each sample
    labelled with its worker (a `worker` label of its own kept as `exported_worker`, as
    Prometheus does); a family's help and type are the first worker's. A text that does not
    parse is left out whole (logged), never half."""
    families: dict[str, Metric] = {}
    for worker, text in texts.items():
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError as exc:
            log.warning("ingest worker %s's metrics did not parse: %s", worker, exc)
            continue
        names = {family.name for family in parsed}
        for family in parsed:
            if family.name.endswith(_CREATED) and family.name[:-len(_CREATED)] in names:
                continue
            into = families.get(family.name)
            if into is None:
                into = families[family.name] = Metric(family.name, family.documentation,
                                                      family.type, family.unit)
            for sample in family.samples:
                if sample.name.endswith(_CREATED):
                    continue
                labels = dict(sample.labels)
                if "worker" in labels:
                    labels["exported_worker"] = labels.pop("worker")
                into.add_sample(sample.name, {**labels, "worker": worker},
                                sample.value, sample.timestamp, sample.exemplar)
    return list(families.values())


def get(address: tuple[str, int], path: str, timeout_s: float = SCRAPE_TIMEOUT_S
        ) -> tuple[int, bytes]:
    """(status, body) of a GET to a worker's listener; http.client, not urllib: no proxy from
    the environment stands between a supervisor and its workers. A body is read to
    `MAX_BODY_BYTES` at most. Raises OSError (http.client's own errors among them)."""
    connection = http.client.HTTPConnection(*address, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(MAX_BODY_BYTES)
    except http.client.HTTPException as exc:  # a worker gone between its headers and body
        raise OSError(f"{path}: {exc!r}") from None
    finally:
        connection.close()


Answer = tuple[int, bytes] | str


def fetch_each(addresses: Mapping[str, tuple[str, int]], paths: Sequence[str],
               timeout_s: float = SCRAPE_TIMEOUT_S) -> dict[tuple[str, str], Answer]:
    """Every path of every worker at once, each within `timeout_s`, keyed (worker, path):
    (status, body), or why not. At once, so that a worker that hangs costs one timeout."""
    asked = [(worker, address, path) for worker, address in addresses.items() for path in paths]
    if not asked:
        return {}
    out: dict[tuple[str, str], Answer] = {}
    with ThreadPoolExecutor(max_workers=min(len(asked), MAX_AT_ONCE),
                            thread_name_prefix="worker-probe") as pool:
        futures = {(worker, path): pool.submit(get, address, path, timeout_s)
                   for worker, address, path in asked}
        for key, future in futures.items():
            try:
                out[key] = future.result()
            except (OSError, ValueError) as exc:
                out[key] = f"not answering: {exc}"
    return out


def fetch_all(addresses: Mapping[str, tuple[str, int]], path: str,
              timeout_s: float = SCRAPE_TIMEOUT_S) -> dict[str, Answer]:
    """`path` of every worker at once, each within `timeout_s`: (status, body), or why not."""
    return {worker: answer
            for (worker, _), answer in fetch_each(addresses, (path,), timeout_s).items()}


class WorkerMetrics:
    """A collector for the supervisor's listener: the workers' metrics, read at each scrape
    (all at once, each within SCRAPE_TIMEOUT_S). A worker that does not answer (starting,
    restarting, hung) is left out of that scrape."""

    def __init__(self, addresses: Callable[[], Mapping[str, tuple[str, int]]]) -> None:
        self._addresses = addresses

    def collect(self) -> Iterable[Metric]:
        texts: dict[str, str] = {}
        for worker, answer in fetch_all(self._addresses(), "/metrics").items():
            if isinstance(answer, str) or answer[0] != 200:
                log.debug("ingest worker %s's metrics not read: %s", worker, answer)
                continue
            texts[worker] = answer[1].decode(errors="replace")
        return merged(texts)
