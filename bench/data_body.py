"""Reading a DATA body: aiosmtpd 1.4.6's way (a bytearray per line, joined at the end) against
ingest's (`ingest.data_body`: one buffer), side by side on the same bytes in one run.

Each reader runs in its own child process, so its peak RSS is its own; the time is the mean
over repetitions, rounds alternating old, new, old, new.

    python -m bench.data_body [--sizes 100000,20000000,200000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import time
from typing import Any

from katagate.ingest.data_body import DataBody

LINE = b"A" * 74 + b"\r\n"  # a base64 or quoted-printable body's usual line
LIMIT = 1001


def _wire(size: int) -> bytes:
    return LINE * max(1, size // len(LINE)) + b".\r\n"


async def _aiosmtpd_way(wire: bytes) -> bytes:
    """aiosmtpd.smtp.SMTP.smtp_DATA's reading loop, as released in 1.4.6 (limits elided)."""
    reader = asyncio.StreamReader(limit=LIMIT)
    reader.feed_data(wire)
    reader.feed_eof()
    lines: list[bytearray] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b".\r\n":
            break
        lines.append(bytearray(line))
    for text in lines:
        if text.startswith(b"."):
            del text[0]
    content = b"".join(lines)
    lines *= 0
    return content


async def _one_buffer(wire: bytes) -> bytes:
    reader = asyncio.StreamReader(limit=LIMIT)
    reader.feed_data(wire)
    reader.feed_eof()
    body = DataBody(max_bytes=None, max_line=LIMIT)
    await body.read(reader)
    return body.content()


READERS = {"aiosmtpd": _aiosmtpd_way, "one_buffer": _one_buffer}


def _measure(name: str, size: int, out: Any) -> None:
    wire = _wire(size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    repetitions = max(1, 40_000_000 // size)
    began = time.perf_counter()
    for _ in range(repetitions):
        content = asyncio.run(READERS[name](wire))
    elapsed = (time.perf_counter() - began) / repetitions
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.send({"ms": elapsed * 1000, "peak_over_wire_mb": (peak - base) / 1024,
              "content_mb": len(content) / 2**20})


def measure(name: str, size: int) -> dict[str, float]:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("spawn").Process(target=_measure,
                                                         args=(name, size, sender))
    child.start()
    result: dict[str, float] = receiver.recv()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,20000000,200000000")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    report = []
    for size in (int(s) for s in args.sizes.split(",")):
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in READERS}
        for _ in range(args.rounds):
            for name in READERS:
                runs[name].append(measure(name, size))
        row: dict[str, Any] = {"size": size}
        for name, rs in runs.items():
            row[name] = {"ms": min(r["ms"] for r in rs),
                         "peak_over_wire_mb": max(r["peak_over_wire_mb"] for r in rs)}
        old, new = row["aiosmtpd"], row["one_buffer"]
        row["time_ratio"] = new["ms"] / old["ms"]
        row["memory_ratio"] = (new["peak_over_wire_mb"] / old["peak_over_wire_mb"]
                               if old["peak_over_wire_mb"] > 1 else None)
        report.append(row)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
