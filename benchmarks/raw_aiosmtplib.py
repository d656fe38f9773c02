"""The transport baseline: pre-built messages sent with bare aiosmtplib over reused connections.

Builds ``--count`` messages of about ``--size`` bytes first (not timed), then times connecting,
sending them all over ``--concurrency`` connections, and quitting. Prints one JSON object:
``{"letters": N, "seconds": T, "loop": "asyncio" | "uvloop"}``.

    python benchmarks/raw_aiosmtplib.py --port 2525 --count 10000 --concurrency 8 [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterator

from aiosmtplib import SMTP

SENDER = "letters@example.org"
RECIPIENT = "minister@foreign-ministry.example.org"


def messages(count: int, size: int) -> list[bytes]:
    """``count`` distinct CRLF messages of about ``size`` bytes each."""
    line = b"I urge you to release Maryia Kalesnikava immediately and unconditionally.\r\n"
    built = []
    for n in range(count):
        head = (
            f"From: Supporter {n} <{SENDER}>\r\nTo: Minister <{RECIPIENT}>\r\n"
            f"Subject: Release Maryia Kalesnikava\r\nMessage-ID: <{n}.raw@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        ).encode("ascii")
        body = line * max((size - len(head)) // len(line), 1)
        built.append(head + body)
    return built


async def send_all(port: int, data: list[bytes], concurrency: int) -> float:
    """Send every message over ``concurrency`` connections; the seconds it took."""
    queue: Iterator[bytes] = iter(data)

    async def worker() -> None:
        smtp = SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="bench")
        await smtp.connect()
        for message in queue:
            await smtp.sendmail(SENDER, [RECIPIENT], message)
        await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def main() -> None:
    """Parse the command line, build, send, print the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=2500)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args()
    data = messages(args.count, args.size)
    if args.uvloop:
        import uvloop

        seconds = uvloop.run(send_all(args.port, data, args.concurrency))
    else:
        seconds = asyncio.run(send_all(args.port, data, args.concurrency))
    loop = "uvloop" if args.uvloop else "asyncio"
    print(json.dumps({"letters": len(data), "seconds": seconds, "loop": loop}))


if __name__ == "__main__":
    main()
