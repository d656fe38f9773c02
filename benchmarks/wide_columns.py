"""Validate time as a list grows wider: `python benchmarks/wide_columns.py [COLUMNS ...]`.

Writes a CSV of two contacts and N columns and a letter using one column that exists and one
that does not, then times `Campaign(config).validate()` in one process. The time must grow
linearly with the columns: the ratio of each time to the first, divided by the ratio of
their widths, stays near 1.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from mailaction.campaign import Campaign
from mailaction.config import load_config

LETTER = "To: {{ email }}\nFrom: a@example.org\nSubject: Hello {{ column_5 }}\n\n{{ town }}\n"


def validate_seconds(folder: Path, columns: int) -> float:
    """Seconds to load and validate a two-contact list ``columns`` columns wide."""
    names = ["email", *(f"Column {n}" for n in range(columns))]
    values = ",".join(str(n) for n in range(columns))
    (folder / "contacts.csv").write_text(
        ",".join(names) + f"\np1@example.org,{values}\np2@example.org,{values}\n", encoding="utf-8"
    )
    (folder / "letter.txt").write_text(LETTER, encoding="utf-8")
    config = folder / "mailaction.toml"
    config.write_text(
        '[campaign]\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n', encoding="utf-8"
    )
    start = time.perf_counter()
    result = Campaign(load_config(config)).validate(workers=0)
    elapsed = time.perf_counter() - start
    assert result.invalid_rows == 2  # {{ town }} is no column
    return elapsed


def main() -> None:
    widths = [int(arg) for arg in sys.argv[1:]] or [10_000, 20_000, 40_000]
    with tempfile.TemporaryDirectory() as scratch:
        times = [validate_seconds(Path(scratch), width) for width in widths]
    for width, seconds in zip(widths, times, strict=True):
        growth = (seconds / times[0]) / (width / widths[0])
        print(
            f"{width:>7,} columns × 2 rows: {seconds:6.2f} s  (time ratio ÷ width ratio: {growth:.2f})"
        )


if __name__ == "__main__":
    main()
