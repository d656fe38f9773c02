"""The cost of DKIM signing per letter, beside the cost of building the letter itself.

    .venv/bin/python benchmarks/dkim_cost.py               2,000 letters, printed
    .venv/bin/python benchmarks/run.py --only dkim         the same, with the other benchmarks' output

Signs the benchmark campaign's letters (Markdown, about 3 KB each) with a fresh 2048-bit RSA key:
mailaction's signer (OpenSSL through `cryptography`) and, on fewer letters, dkimpy's (pure-Python
RSA). Everything runs in this process; no network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import dkim  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import write_contacts, write_mailaction_config, write_template

from mailaction.campaign import Campaign
from mailaction.config import DKIMConfig, load_config
from mailaction.dkim import DKIMSigner

SELECTOR, DOMAIN = "bench", "example.org"


def make_key(folder: Path) -> Path:
    """A new 2048-bit RSA private key in PEM."""
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    return key


def build_letters(folder: Path, count: int) -> tuple[list[bytes], float]:
    """``count`` letters of the benchmark campaign, and the microseconds each took to build."""
    config = write_mailaction_config(
        folder / "mailaction.toml", port=1025, template=write_template(folder / "letter.txt"),
        contacts=write_contacts(folder / "contacts.csv", count), log=folder / "log.sqlite",
        concurrency=1,
    )  # fmt: skip
    campaign = Campaign(load_config(config))
    began = time.perf_counter()
    letters = [letter.data for letter in campaign.letters()]
    return letters, (time.perf_counter() - began) / count * 1e6


def per_letter(sign: Callable[[bytes], bytes], letters: list[bytes]) -> float:
    """Microseconds ``sign`` takes per letter."""
    began = time.perf_counter()
    for data in letters:
        sign(data)
    return (time.perf_counter() - began) / len(letters) * 1e6


def signers(key: Path) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """mailaction's signer and dkimpy's, for the same key and headers."""
    ours = DKIMSigner(DKIMConfig(SELECTOR, DOMAIN, key))
    pem = key.read_bytes()

    def dkimpy(data: bytes) -> bytes:
        signature: bytes = dkim.sign(data, SELECTOR.encode(), DOMAIN.encode(), pem)
        return signature + data

    return ours.sign, dkimpy


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=2_000)
    args = parser.parse_args()
    with TemporaryDirectory(prefix="mailaction-dkim-") as scratch:
        folder = Path(scratch)
        letters, build = build_letters(folder, args.letters)
        ours, dkimpy = signers(make_key(folder))
        signing = per_letter(ours, letters)
        reference = per_letter(dkimpy, letters[: max(len(letters) // 20, 10)])
    size = sum(map(len, letters)) / len(letters)
    print(f"{len(letters):,} letters of {size:,.0f} bytes on average")
    print(f"building a letter (render, check, MIME): {build:8,.0f} µs")
    print(f"signing it, mailaction (OpenSSL):        {signing:8,.0f} µs ({signing / build:.2f}× building)")
    print(f"signing it, dkimpy (pure-Python RSA):    {reference:8,.0f} µs")


if __name__ == "__main__":
    main()
