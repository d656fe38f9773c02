"""Time to read a 100,000-row workbook into contacts: `python benchmarks/sheet_load.py [ROWS]`.

Writes an .xlsx in the spreadsheet programs' style (a title row above the header, a postcode in
the `00000` format, a percentage, a dd/mm/yyyy date) and the same list as an .ods (each cell's
value and displayed text, as LibreOffice saves it) into a temporary folder, then times
`ContactList(path)` and reading every contact, three times each, and prints the median and the
range of the wall time and of the CPU time (steadier on a busy machine).
"""

from __future__ import annotations

import datetime
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import COLUMNS, contact_rows

from mailaction.contacts import ContactList

ROUNDS = 3


def write_workbook(path: Path, count: int) -> Path:
    """``count`` generated contacts with a postcode, a share and a date, below a title row."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Supporters")
    sheet.append(["Supporters of the campaign"])
    sheet.append([*COLUMNS, "postcode", "share", "joined"])
    first_day = datetime.date(2024, 1, 1)

    def cell(value: object, number_format: str) -> WriteOnlyCell:
        made = WriteOnlyCell(sheet, value)
        made.number_format = number_format
        return made

    for n, row in enumerate(contact_rows(count)):
        postcode = cell(n % 100_000, "00000")
        share = cell((n % 100) / 100, "0%")
        joined = cell(first_day + datetime.timedelta(days=n % 1000), "dd/mm/yyyy")
        sheet.append([*row, postcode, share, joined])
    book.save(path)
    return path


def write_ods(path: Path, count: int) -> Path:
    """The list of `write_workbook` as an OpenDocument spreadsheet."""

    def cell(shown: str, kind: str = "string", value: str = "") -> str:
        attribute = f" office:value={quoteattr(value)}" if value else ""
        return (
            f'<table:table-cell office:value-type="{kind}"{attribute}>'
            f"<text:p>{escape(shown)}</text:p></table:table-cell>"
        )

    def row(cells: list[str]) -> str:
        return "<table:table-row>" + "".join(cells) + "</table:table-row>\n"

    lines = [row([cell("Supporters of the campaign")])]
    lines.append(row([cell(name) for name in [*COLUMNS, "postcode", "share", "joined"]]))
    first_day = datetime.date(2024, 1, 1)
    for n, values in enumerate(contact_rows(count)):
        joined = first_day + datetime.timedelta(days=n % 1000)
        lines.append(row([
            *(cell(value) if value else "<table:table-cell/>" for value in values),
            cell(f"{n % 100_000:05d}", "float", str(n % 100_000)),
            cell(f"{n % 100}%", "percentage", str((n % 100) / 100)),
            cell(joined.strftime("%d/%m/%Y"), "date", joined.isoformat()),
        ]))  # fmt: skip
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content'
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.3">'
        '<office:body><office:spreadsheet><table:table table:name="Supporters">\n'
        + "".join(lines)
        + "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content)
    return path


def load(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds to open ``path`` and read every contact."""
    start, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in ContactList(path, id_column="email"))
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    assert count > 0
    return elapsed


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as scratch:
        paths = [
            write_workbook(Path(scratch) / "contacts.xlsx", count),
            write_ods(Path(scratch) / "contacts.ods", count),
        ]
        measured = {path.suffix: [load(path) for _ in range(ROUNDS)] for path in paths}
    for suffix, rounds in measured.items():
        for what, times in zip(("wall", "CPU"), zip(*rounds, strict=True), strict=True):
            print(
                f"{count:,} rows × {len(COLUMNS) + 3} columns ({suffix}), {what} time: median "
                f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
                f"{ROUNDS} rounds)"
            )


if __name__ == "__main__":
    main()
