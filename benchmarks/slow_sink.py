"""An aiosmtpd sink that delays every reply and can record when each message arrived.

Run as its own process: it prints ``port <N>`` once it listens, accepts every message without
storing it, and on SIGTERM or SIGINT writes one ``time.monotonic()`` per message (taken when the
end of its data arrived) to ``--times`` and exits; with ``--ids``, each line is the time, a space
and the message's Message-ID (a counting sink: what arrived, how often, when).

    python benchmarks/slow_sink.py --delay 0.02
    python benchmarks/slow_sink.py --delay 0 --times arrivals.txt
    python benchmarks/slow_sink.py --delay 0 --times arrivals.txt --ids
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import time
from pathlib import Path
from typing import AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)


class Recorder:
    """aiosmtpd handler: accepts every message, notes when its data ended (and its Message-ID),
    offers PIPELINING."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.message_ids: list[str] = []

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise PIPELINING too, as remote relays do (aiosmtpd reads commands in order)."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Note the arrival and accept the message."""
        self.arrivals.append(time.monotonic())
        content = envelope.original_content or b""
        found = _MESSAGE_ID.search(content.partition(b"\r\n\r\n")[0])
        self.message_ids.append(found.group(1).decode("ascii", "replace") if found else "-")
        return "250 2.0.0 OK"


class DelayedSMTP(SMTP):
    """An SMTP session whose every reply leaves ``delay`` seconds after the request arrived.

    The wait counts from the last bytes received, like a round trip over a slow link: replies to
    commands sent together (PIPELINING) come back together, one wait later. A multi-line reply
    (EHLO) is delayed once.
    """

    def __init__(self, handler: Recorder, delay: float, **kwargs: object) -> None:
        super().__init__(handler, **kwargs)
        self.delay = delay
        self._received = 0.0
        self._continuing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._received = self.loop.time()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._received = self.loop.time()
        super().data_received(data)

    async def push(self, status: AnyStr) -> None:
        """Send one reply line; the first line of a reply waits until its time has come."""
        line = status.encode("ascii") if isinstance(status, str) else status
        if self.delay and not self._continuing:
            await asyncio.sleep(max(self._received + self.delay - self.loop.time(), 0))
        self._continuing = line[3:4] == b"-"
        await super().push(status)


async def serve(host: str, port: int, delay: float, times: Path | None, ids: bool = False) -> None:
    """Listen until SIGTERM or SIGINT, then write the arrival times."""
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    server = await loop.create_server(
        lambda: DelayedSMTP(recorder, delay, hostname="slow-sink", loop=loop), host, port
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    if times is not None and ids:
        lines = zip(recorder.arrivals, recorder.message_ids, strict=True)
        times.write_text("".join(f"{t!r} {message_id}\n" for t, message_id in lines))
    elif times is not None:
        times.write_text("".join(f"{t!r}\n" for t in recorder.arrivals))


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds before each reply")
    parser.add_argument("--times", type=Path, help="write arrival times here on exit")
    parser.add_argument("--ids", action="store_true", help="and each message's Message-ID")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.delay, args.times, args.ids))


if __name__ == "__main__":
    main()
