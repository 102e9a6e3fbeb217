"""The JSON parts of the bad-input corpus (tests/corpus/<kind>/cases.json), read once for the
unit tests and the end-to-end tests alike."""

from __future__ import annotations

import codecs
import functools
import json
import re
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "corpus"
_REPEAT = re.compile(r"<<REPEAT (\d+)>>(.*?)<<END>>", re.DOTALL)


def corpus_bytes(text: str) -> bytes:
    """`<<REPEAT n>>...<<END>>` expanded, then Python escapes decoded."""
    expanded = _REPEAT.sub(lambda m: m.group(2) * int(m.group(1)), text)
    return codecs.escape_decode(expanded.encode("utf-8"))[0]


def corpus_cases(kind: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((CORPUS / kind / "cases.json").read_text())["cases"]
    return cases


MIME = corpus_cases("mime")


@functools.cache
def mime_message(name: str) -> bytes:
    """The MIME case's message: head + repeat (`{i}` numbered) * times + tail."""
    (case,) = (c for c in MIME if c["name"] == name)
    repeated = "".join(case["repeat"].replace("{i}", str(i)) for i in range(case["times"]))
    return corpus_bytes(case["head"] + repeated + case["tail"])
