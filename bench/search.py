"""Message search over a projector store of N messages (1,000,000 by default): p50/p95 per
kind of query, through the HTTP handler's own code (`projector.http.answer`: validation, the
store's query, canonical JSON), and the store's size on disk.

    python -m bench search [--messages N] [--queries N] [--out DIR] [--store FILE]

The store is built by folding synthetic mail events through the live projector's `evolve`
into a `TimelineStore` on disk (the same schema, indexes and flushes as `katagate projector
run`), committed every 50,000 messages as the snapshot loop commits. The mail is made to look
like a month of a company's inbound mail: 5,000 senders on 500 domains, 20,000 recipients on
20 domains, subjects from a Zipf-weighted vocabulary, 2,000 client addresses; 90 % clean,
3 % detected (deleted with a Backup copy, rejected, or delivered tagged), 5 % Skipped, 2 %
timed out; 1 % deferred, 0.5 % bounced. Writes bench/results/search-<time>/report.json and
report.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.machine import machine
from katagate.projector.http import answer
from katagate.projector.live import LiveProjection
from katagate.projector.store import TimelineStore
from katagate.projector.views import Projections, evolve
from katagate.schemas import Event
from tests.unit.fixtures.events import sample_events

RESULTS = Path(__file__).resolve().parent / "results"
START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
COMMON = ["invoice", "meeting", "report", "urgent", "payment", "order", "shipment", "contract",
          "password", "update", "re", "fwd", "your", "for", "the", "new", "account", "q1"]


def vocabulary(size: int = 5000, seed: int = 3) -> list[str]:
    """Common words first (the most frequent), then made-up words of 2 to 4 syllables."""
    rng = random.Random(seed)
    made = {"".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou")
                    for _ in range(rng.randint(2, 4))) for _ in range(size * 2)}
    return COMMON + sorted(made - set(COMMON))[:size]


WORDS = vocabulary()
SKIPPED = ("size_limit", "count_limit", "too_large", "not_connected", "error")
COMMIT_EVERY = 50_000


class Mail:
    """Synthetic events made from the schema's sample events (validated once; copied after)."""

    def __init__(self, messages: int, seed: int = 20) -> None:
        self.rng = random.Random(seed)
        self.messages = messages
        self.samples = {e.type: e for e in sample_events()}
        self.senders = [f"user{n}@d{n % 500}.example" for n in range(5000)]
        self.recipients = [f"staff{n}@corp{n % 20}.example.com" for n in range(20_000)]
        self.clients = [f"203.0.{n // 250}.{n % 250 + 1}" for n in range(2000)]
        weights = [1 / (rank + 1) for rank in range(len(WORDS))]
        self.words = self.rng.choices(WORDS, weights, k=200_000)

    def event(self, kind: str, message_id: str, at: datetime, **fields: Any) -> Event:
        return self.samples[kind].model_copy(update={
            "event_id": uuid.UUID(int=self.rng.getrandbits(128)), "occurred_at": at,
            "message_id": message_id, **fields})

    def flow(self, i: int) -> list[Event]:
        rng, at = self.rng, START + SPAN * i / self.messages
        m = f"01B{i:023d}"
        subject = " ".join(self.words[rng.randrange(len(self.words))]
                           for _ in range(rng.randint(3, 8)))
        sender = self.senders[min(int(rng.paretovariate(1.2)) - 1, 4999)]
        to = rng.sample(self.recipients, rng.choice((1, 1, 1, 2, 3)))
        size = int(rng.lognormvariate(9.5, 1.2))
        later = lambda s: at + timedelta(seconds=s)  # noqa: E731
        events = [self.event("mail.received", m, at, envelope_from=sender, envelope_to=to,
                             subject=subject, size=size, client_ip=rng.choice(self.clients)),
                  self.event("quarantine.admitted", m, later(0.01), size=size,
                             deadline_at=later(600.01))]
        roll = rng.random()
        decided: dict[str, Any] = {"action": "deliver", "tag": None, "backup": False,
                                   "skipped": False, "reason": "not_detected"}
        if roll < 0.90:
            events.append(self.event("scan.verdict", m, later(20), state="not_detected",
                                     detects=[]))
        elif roll < 0.93:
            events.append(self.event("scan.verdict", m, later(30)))
            choice = rng.random()
            decided |= {"reason": "detected", "action": "delete" if choice < 0.6 else (
                "reject" if choice < 0.8 else "deliver"), "backup": choice < 0.6,
                "tag": "[KATA detect]" if choice >= 0.8 else None}
        elif roll < 0.98:
            decided |= {"skipped": True, "reason": rng.choice(SKIPPED)}
        else:
            events.append(self.event("scan.timed_out", m, later(600)))
            decided |= {"skipped": True, "reason": "timeout"}
        events.append(self.event("action.decided", m, later(601), **decided))
        events.append(self.event("quarantine.released", m, later(601.1)))
        if decided["backup"]:
            events.append(self.event("backup.stored", m, later(601.2)))
            events.append(self.event("backup.retained", m, later(601.3), size=size,
                                     stored_at=later(601.2), expires_at=later(601.2 + 2.6e6)))
        if decided["action"] == "delete":
            events.append(self.event("message.discarded", m, later(601.4)))
        elif decided["action"] == "reject":
            events.append(self.event("ndr.sent", m, later(601.4)))
        else:
            events += self._delivery(m, later, to)
        return events

    def _delivery(self, m: str, later: Any, to: list[str]) -> list[Event]:
        roll = self.rng.random()
        if roll < 0.985:
            return [self.event("delivery.delivered", m, later(602), recipients=to)]
        deferred = self.event("delivery.deferred", m, later(602), retry_at=later(902))
        if roll < 0.995:
            return [deferred]
        return [deferred, self.event("delivery.failed", m, later(90_000), recipients=to)]


def build(path: Path, messages: int) -> tuple[Projections, dict[str, Any]]:
    mail = Mail(messages)
    views = Projections(store=TimelineStore(path))
    began, events = time.perf_counter(), 0
    for i in range(messages):
        for event in mail.flow(i):
            evolve(views, event)
            events += 1
        if (i + 1) % COMMIT_EVERY == 0:
            views.store.commit()
            print(f"search bench: {i + 1} messages in {time.perf_counter() - began:.0f} s",
                  flush=True)
    views.store.commit()
    return views, {"messages": messages, "events": events,
                   "build_seconds": round(time.perf_counter() - began, 1)}


def queries(views: Projections, mail: Mail, count: int) -> dict[str, list[str]]:
    """Each kind's queries, with values drawn from the mail (so most find something)."""
    rng = random.Random(7)

    def day() -> tuple[str, str]:
        since = START + timedelta(days=rng.randrange(29))
        return since.isoformat(), (since + timedelta(days=1)).isoformat()

    def q(**params: Any) -> str:
        return urlencode(params)

    kinds: dict[str, Any] = {
        "sender": lambda: q(**{"from": mail.senders[min(int(rng.paretovariate(1.2)) - 1,
                                                        4999)]}),
        "sender_domain": lambda: q(**{"from": f"*@d{rng.randrange(500)}.example"}),
        "recipient": lambda: q(to=rng.choice(mail.recipients)),
        "recipient_domain": lambda: q(to=f"*@corp{rng.randrange(20)}.example.com"),
        "subject_common": lambda: q(subject=rng.choice(WORDS[:18])),
        "subject_rare": lambda: q(subject=rng.choice(WORDS[1000:])),
        "subject_prefix": lambda: q(subject=rng.choice(WORDS[18:300])[:4]),
        "subject_two_words": lambda: q(subject=f"{rng.choice(WORDS[:50])} "
                                               f"{rng.choice(WORDS[:300])}"),
        "verdict_time_range": lambda: q(verdict=rng.choice(("detected", "skipped",
                                                            "timed_out")),
                                        since=day()[0], until=day()[1]),
        "combined": lambda: q(**{"from": f"*@d{rng.randrange(50)}.example",
                                 "to": f"*@corp{rng.randrange(20)}.example.com",
                                 "status": "delivered", "verdict": "not_detected",
                                 "since": day()[0]}),
        "combined_rare": lambda: q(**{"from": f"*@d{rng.randrange(500)}.example",
                                      "verdict": "detected", "action": "deleted"}),
        "client": lambda: q(client=rng.choice(mail.clients), status="delivered"),
        "backup_listing": lambda: q(state="held"),
        "queue_listing": lambda: q(limit=100),
    }
    return {kind: [make() for _ in range(count)] for kind, make in kinds.items()}


PATHS = {"backup_listing": "/backup/copies", "queue_listing": "/queue/messages"}


def timed(live: LiveProjection, path: str, query: str) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    reply = answer(live, path, query)
    seconds = time.perf_counter() - began
    assert reply.status == 200, reply.body
    return seconds, json.loads(reply.body)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2), "queries": len(ordered)}


def measure(live: LiveProjection, mail: Mail, count: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind, asked in queries(live.projections, mail, count).items():
        samples, found = [], 0
        for query in asked:
            seconds, body = timed(live, PATHS.get(kind, "/search/messages"), query)
            samples.append(seconds)
            found += len(body["messages"])
        results[kind] = {**percentiles(samples), "rows_per_query": round(found / len(asked), 1)}
    # Deep pages: the 20th page of 50 of a broad query, each page asked with its cursor.
    samples = []
    for domain in range(min(count, 20)):
        query = urlencode({"to": f"*@corp{domain}.example.com"})
        for _page in range(20):
            seconds, body = timed(live, "/search/messages", query)
            samples.append(seconds)
            if body["next"] is None:
                break
            query = urlencode({"to": f"*@corp{domain}.example.com", "cursor": body["next"]})
    results["deep_pages"] = percentiles(samples)
    return results


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Search benchmark, {report['when']}", "",
             f"{report['build']['messages']:,} messages ({report['build']['events']:,} events) "
             f"folded in {report['build']['build_seconds']} s; the store is "
             f"{report['database_mib']} MiB on disk.", "",
             f"`{json.dumps(report['machine'])}`", "",
             "| query | p50 ms | p95 ms | max ms | rows per query | queries |",
             "|---|---|---|---|---|---|"]
    for kind, r in report["queries"].items():
        lines.append(f"| {kind} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | "
                     f"{r.get('rows_per_query', 50)} | {r['queries']} |")
    lines += ["", f"Worst p95: {report['worst_p95_ms']} ms (goal: under 200 ms)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench search", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100, help="per kind of query")
    parser.add_argument("--out", type=Path, help="results folder")
    parser.add_argument("--store", type=Path, help="build (or reuse) the store here")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-search-"))
    path = args.store or folder / "bench.projection.sqlite"
    if args.store and args.store.exists():
        views = Projections(store=TimelineStore(path))
        build_report = json.loads((path.parent / f"{path.name}.build.json").read_text())
    else:
        views, build_report = build(path, args.messages)
        if args.store:
            (path.parent / f"{path.name}.build.json").write_text(json.dumps(build_report))
    live = LiveProjection(projections=views)
    results = measure(live, Mail(args.messages), args.queries)
    views.close()  # the last connection: SQLite checkpoints the WAL into the file
    size = sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*")
               if not p.name.endswith(".json"))
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              "build": build_report, "database_mib": round(size / 2**20, 1),
              "queries": results,
              "worst_p95_ms": max(r["p95_ms"] for r in results.values())}
    out = args.out or RESULTS / f"search-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(f"written to {out}")
    if not args.store:
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
