"""The baseline SMTP server: aiosmtpd answering 250 to everything and keeping nothing.

    python -m bench.bare_sink --port P
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP


class Accept:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok"


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Accept(), data_size_limit=64 * 1024 * 1024), "127.0.0.1", port
    )
    print(f"bare-sink=127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
