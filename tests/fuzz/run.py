"""Run one fuzz target under atheris: `python -m tests.fuzz.run TARGET [libFuzzer flags]`."""

from __future__ import annotations

import sys

import atheris

# Only our code and the email parser it calls are instrumented (coverage guides the fuzzer
# through them); instrumenting pydantic too costs seconds at every start for little.
with atheris.instrument_imports(include=["decider", "ingest", "scanner", "email"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer flags]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
