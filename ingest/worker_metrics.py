"""The metrics of ingest's SMTP workers as one stage's (ingest/workers.py): each worker serves
its own on a loopback port only its supervisor knows; a scrape of the supervisor's listener
reads them all and gives every series a `worker` label, so that a dashboard's sum() over the
stage is what it was with one process.

The merge is pure over the workers' texts (`merged`); `WorkerMetrics` fetches them.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable, Iterable, Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 5.0
# A counter's and a histogram's creation time: the time a worker started, which no panel uses
# and which would be one more series per series.
_CREATED = "_created"


def merged(texts: Mapping[str, str]) -> list[Metric]:
    """The families of every worker's exposition (worker label -> its text), each sample
    labelled with its worker; a family's help and type are the first worker's."""
    families: dict[str, Metric] = {}
    for worker, text in texts.items():
        parsed = list(text_string_to_metric_families(text))
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
                into.add_sample(sample.name, {**sample.labels, "worker": worker},
                                sample.value, sample.timestamp, sample.exemplar)
    return list(families.values())


def get(address: tuple[str, int], path: str, timeout_s: float = SCRAPE_TIMEOUT_S
        ) -> tuple[int, bytes]:
    """(status, body) of a GET to a worker's listener; http.client, not urllib: no proxy from
    the environment stands between a supervisor and its workers."""
    connection = http.client.HTTPConnection(*address, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def fetch(address: tuple[str, int]) -> str:
    status, body = get(address, "/metrics")
    if status != 200:
        raise ValueError(f"/metrics answered {status}")
    return body.decode()


class WorkerMetrics:
    """A collector for the supervisor's listener: the workers' metrics, read at each scrape.
    A worker that does not answer (starting, restarting) is left out of that scrape."""

    def __init__(self, addresses: Callable[[], Mapping[str, tuple[str, int]]]) -> None:
        self._addresses = addresses

    def collect(self) -> Iterable[Metric]:
        texts: dict[str, str] = {}
        for worker, address in self._addresses().items():
            try:
                texts[worker] = fetch(address)
            except (OSError, ValueError) as exc:
                log.debug("worker %s's metrics not read: %s", worker, exc)
        return merged(texts)
