"""Letters per second against a server's own limits, beside the ideal those limits allow.

Two runs of the sender (concurrency 8), each against an aiosmtpd server on 127.0.0.1 that
keeps limits the way Postfix's anvil does:

- connections: at most 2 at a time, more refused with 421 at the greeting. The ideal is the
  same letters sent at concurrency 2 to the same server without the limit, in the same run.
- messages: at most N MAIL FROM per window, more answered 450 4.7.1. The ideal is the time
  the limit allows: the first N at once, then N per window. The sender's window is set to the
  server's (Postfix's is 60 s; scaled down here so the run takes seconds).

    .venv/bin/python benchmarks/server_limits.py [--letters 400] [--rate 100/5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailaction import ratelimit
from mailaction.config import SendingConfig, SMTPConfig
from mailaction.deliverylog import DeliveryLog
from mailaction.sender import Sender
from tests.letters import letters
from tests.smtpserver import FaultServer


def run(server: FaultServer, count: int, concurrency: int) -> float:
    """Send ``count`` letters; the seconds it took."""
    with (
        tempfile.TemporaryDirectory() as scratch,
        DeliveryLog(Path(scratch) / "log.sqlite", "bench") as log,
    ):
        batch = letters(count)
        for item in batch:
            log.register(item)
        smtp = SMTPConfig(host="127.0.0.1", port=server.port, security="none")
        sending = SendingConfig(concurrency=concurrency, retry_delay=1.0)
        started = time.perf_counter()
        summary = asyncio.run(Sender(smtp, sending, log).send(batch))
        elapsed = time.perf_counter() - started
    if summary.sent != count or len(server.messages) != count:
        raise SystemExit(f"expected {count} letters, sent {summary.sent}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=400)
    parser.add_argument("--rate", default="100/5", help="messages/seconds the server allows")
    parser.add_argument("--rounds", type=int, default=5, help="repetitions of the first part")
    args = parser.parse_args()
    count, (per, window) = args.letters, map(float, args.rate.split("/"))

    ideals, tooks, refused = [], [], 0
    for _ in range(args.rounds):  # interleaved, so a busy moment hits both alike
        with FaultServer(pipelining=True) as unlimited:
            ideals.append(run(unlimited, count, 2))
        with FaultServer(pipelining=True, max_connections=2) as limited:
            tooks.append(run(limited, count, 8))
        refused = max(refused, limited.refused_connections)
    ideal, took = statistics.median(ideals), statistics.median(tooks)
    print(f"2 connections allowed, {count} letters at concurrency 8:")
    print(f"  {count / took:,.0f} letters/s; ideal (concurrency 2, no limit) {count / ideal:,.0f}")
    print(f"  {ideal / took:.2f}x the ideal (medians of {args.rounds}); at most {refused} refused")

    ratelimit.SLOW_DOWN_WINDOW = window
    with FaultServer(pipelining=True, message_rate=(int(per), window)) as limited:
        took = run(limited, count, 8)
    allowed = (math.ceil(count / per) - 1) * window
    print(f"{int(per)} messages per {window:g} s allowed, {count} letters at concurrency 8:")
    print(f"  {took:.1f} s; the limit allows {allowed:.1f} s: {took / allowed:.2f}x the ideal time")
    print(f"  {limited.refused_messages} letters refused for the rate (slow-downs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
