"""Profiles `mailaction send` or `mailaction validate` on generated data with cProfile.

    .venv/bin/python benchmarks/hotspots.py send --rows 10000 --concurrency 8
    .venv/bin/python benchmarks/hotspots.py validate --rows 100000 --out validate.prof

Prints the functions with the most own time and the most cumulative time; keeps the profile
in ``--out`` for `python -m pstats` or snakeviz.
"""

from __future__ import annotations

import argparse
import pstats
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import write_contacts, write_mailaction_config, write_template
from servers import PostfixSink, run_timed


def profile(command: str, rows: int, concurrency: int, out: Path) -> float:
    """Run the command under cProfile into ``out``; its wall time in seconds."""
    with TemporaryDirectory(prefix="mailaction-profile-") as scratch:
        directory = Path(scratch)
        contacts = write_contacts(directory / "contacts.csv", rows)
        template = write_template(directory / "letter.txt")

        def run(port: int) -> float:
            config = write_mailaction_config(
                directory / "mailaction.toml", port=port, template=template, contacts=contacts,
                log=directory / "log.sqlite", concurrency=concurrency,
            )  # fmt: skip
            extra = ["--yes"] if command == "send" else []
            profiled = [sys.executable, "-m", "cProfile", "-o", str(out.resolve()),
                        "-m", "mailaction", command, *extra, "--config", str(config)]  # fmt: skip
            return run_timed(profiled, timeout=1800, cwd=directory).check(command).seconds

        if command != "send":
            return run(1025)
        with PostfixSink() as sink:
            return run(sink.port)


def main() -> None:
    """Parse the command line, profile, print the top functions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["send", "validate"])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("mailaction.prof"))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    seconds = profile(args.command, args.rows, args.concurrency, args.out)
    print(f"{args.command}: {args.rows:,} rows in {seconds:.2f} s under cProfile; {args.out}")
    stats = pstats.Stats(str(args.out))
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
