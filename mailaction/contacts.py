"""The contact list: a CSV, TSV or workbook (XLSX, ODS, XLS) streamed as rows of text; duplicates."""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from array import array
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TextIO

from .errors import ContactsError, Problem
from .keys import contact_key
from .sheets import WORKBOOK_SUFFIXES, SheetRow, column_letter, open_error, open_workbook

_TEXT_SUFFIXES = {".csv": None, ".txt": None, ".tsv": "\t"}  # suffix -> fixed delimiter
_DELIMITERS = ",;\t|"
_BLANK = " \t" + _DELIMITERS  # what a line that holds nothing is made of
_SAMPLE_BYTES = 64 * 1024
# The csv module refuses values over 128 KiB by default, a process-wide setting; a cell of a
# contact list may be longer (a pasted letter), as a spreadsheet program allows.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
# Read after a text file's last line by the lenient reader (`_TextTable._parsed`).
_OPEN_AT_END = "\x00\uffff"
_BLOCK_BYTES = 1024 * 1024
# Bytes no sensible text file holds: C0 controls other than tab/LF/CR, and the five byte values
# Windows-1252 leaves undefined.
_NOT_CP1252_TEXT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x81\x8d\x8f\x90\x9d]")
HEADER_SEARCH_ROWS = 20  # rows of a sheet searched for the header holding the id column


@dataclass(frozen=True, slots=True)
class Contact:
    """One non-blank row of the contact list, every value as text."""

    row: int  # as the organiser sees it in the spreadsheet; the header is row 1
    values: dict[str, str]  # column name -> cell text, trimmed; "" when blank
    source: str  # file name, for messages

    def get(self, column: str) -> str:
        """The value in ``column``, or "" when there is no such column."""
        return self.values.get(column, "")


class ContactList:
    """A contact list file: its column names, and its contacts streamed row by row.

    In a workbook, ``sheet`` (a name, or a number from 1) and ``header_row`` choose the table;
    without them, the first sheet with a header row holding ``id_column`` in its first rows is
    read (the first sheet's first row when ``id_column`` is None). ``description`` says which
    sheet and row were read.
    """

    def __init__(
        self,
        path: Path,
        *,
        sheet: str | int | None = None,
        header_row: int | None = None,
        id_column: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.source = self.path.name
        suffix = self.path.suffix.lower()
        if suffix in WORKBOOK_SUFFIXES:
            self._table: _SheetTable | _TextTable = _SheetTable(
                self.path, sheet, header_row, id_column
            )
        elif suffix in _TEXT_SUFFIXES:
            if sheet is not None:
                raise ContactsError(
                    f"{self.source}: a text file has no sheets; campaign.contacts_sheet is for "
                    "workbooks (.xlsx, .ods, .xls)"
                )
            self._table = _TextTable(self.path, _TEXT_SUFFIXES[suffix], header_row, id_column)
        else:
            raise ContactsError(
                f"{self.source}: unknown kind of contact list {suffix or '(no extension)'!r}; "
                "use .csv, .tsv, .txt, .xlsx, .ods or .xls"
            )
        self.columns = _column_names(self._table, self.source)
        self.description: str = self._table.description

    def __iter__(self) -> Iterator[Contact]:
        """Each non-blank row after the header, in order; ContactsError at a row that cannot fit."""
        columns, source, width = self.columns, self.source, len(self.columns)
        for row, cells in self._table.records():
            values = [cell.strip() for cell in cells]
            if any(values):
                if len(values) > width and any(values[width:]):
                    raise self._unnamed_value(row, values)
                yield Contact(row, dict(zip(columns, values)), source)

    def _unnamed_value(self, row: int, values: list[str]) -> ContactsError:
        """A row with a value in a column the header left without a name."""
        index = next(i for i in range(len(self.columns), len(values)) if values[i])
        label = self._table.column_label(index)
        return ContactsError(f"{self.source}:{row}: {label} has a value but no name in the header")


def column_alias(name: str) -> str:
    """The snake_case name a column is also known by: "First Name" → first_name."""
    return re.sub(r"\W+", "_", name).strip("_").lower()


class DuplicateFinder:
    """Reports contacts whose id was already seen in an earlier row."""

    def __init__(self, id_column: str, source: str | None = None) -> None:
        self.id_column = id_column
        self.source = source
        self._first_rows = _FirstRows()

    def check(self, contact: Contact) -> Problem | None:
        """A problem when ``contact`` repeats an earlier contact's id; blank ids are not checked."""
        value = contact.get(self.id_column)
        if not value:
            return None
        first = self._first_rows.setdefault(_id_key(value), contact.row)
        if first == contact.row:
            return None
        source = contact.source if self.source is None else self.source
        message = f"duplicate of row {first} (same {self.id_column})"
        return Problem(source, contact.row, self.id_column, message)


def _id_key(value: str) -> int:
    """A 64-bit digest of an id, compared as the delivery log compares it (`keys.contact_key`)."""
    value = contact_key(value)
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1  # 0 marks an empty slot


class _FirstRows:
    """64-bit key -> first row, in two flat arrays (12 bytes a slot) instead of a dict of objects.

    Open addressing with linear probing, kept at most half full; a million ids take ~25 MB.
    """

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._keys = array("Q", [0]) * capacity
        self._rows = array("I", [0]) * capacity
        self._count = 0

    def setdefault(self, key: int, row: int) -> int:
        """The row stored for ``key``, storing ``row`` first when the key is new."""
        keys, mask = self._keys, len(self._keys) - 1
        slot = key & mask
        while keys[slot] and keys[slot] != key:
            slot = (slot + 1) & mask
        if keys[slot]:
            return self._rows[slot]
        keys[slot], self._rows[slot] = key, row
        self._count += 1
        if 2 * self._count > len(keys):
            self._grow()
        return row

    def _grow(self) -> None:
        old_keys, old_rows = self._keys, self._rows
        self._keys = array("Q", [0]) * (2 * len(old_keys))
        self._rows = array("I", [0]) * (2 * len(old_rows))
        self._count = 0
        for key, row in zip(old_keys, old_rows):
            if key:
                self.setdefault(key, row)


def _column_names(table: _TextTable | _SheetTable, source: str) -> list[str]:
    """The trimmed header without unnamed columns at its end (a common spreadsheet leftover);
    every column before them needs a name, and names must differ."""
    names = [cell.strip() for cell in table.header]
    while names and not names[-1]:
        names.pop()
    place = f"{source}:{table.header_row}"
    first_index: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name:
            raise ContactsError(f"{place}: {table.column_label(index)} of the header has no name")
        earlier = first_index.setdefault(name, index)
        if earlier != index:
            raise ContactsError(
                f"{place}: {table.column_label(index)} of the header repeats the name {name!r} "
                f"of {table.column_label(earlier)}"
            )
    return names


class _TextTable:
    """A delimited text file read with the standard library's csv reader, every value as text."""

    def __init__(
        self,
        path: Path,
        delimiter: str | None,
        header_row: int | None = None,
        id_column: str | None = None,
    ) -> None:
        self.path, self.source = path, path.name
        try:
            self.encoding = _detect_encoding(path)
            with path.open("rb") as file:
                raw = file.read(_SAMPLE_BYTES)
                complete = not file.read(1)  # a file of exactly _SAMPLE_BYTES is whole
        except OSError as exc:
            raise open_error(path, exc) from None
        lines = _sample_lines(raw, self.encoding, complete)
        if header_row is not None:
            skipped = header_row - 1
        elif id_column is not None:
            skipped = _line_naming(lines, id_column, delimiter)
        else:
            skipped = 0
        content = [line for line in lines[skipped:] if line.strip(_BLANK)]
        if not content:
            raise ContactsError(
                f"{self.source}: the file is empty; the first row must name the columns"
                if header_row is None
                else f"{self.source}: row {header_row} is empty; campaign.contacts_header_row "
                "must name the row that holds the column names"
            )
        self.delimiter = delimiter or _sniff_delimiter(content)
        self.leading_blank = next(
            number
            for number, line in enumerate(lines)
            if number >= skipped and line.strip(" \t" + self.delimiter)
        )
        if header_row is not None and self.leading_blank != skipped:
            raise ContactsError(
                f"{self.source}: row {header_row} is empty; campaign.contacts_header_row must "
                "name the row that holds the column names"
            )
        self.header_row = self.leading_blank + 1
        self.description = f"{self.source}, header on row {self.header_row}"
        with closing(self._rows()) as rows:
            self.header: list[str] = next(rows)[1]

    def column_label(self, index: int) -> str:
        """How to name the header's column ``index`` (from 0) in a message: "column 3"."""
        return f"column {index + 1}"

    def records(self) -> Iterator[tuple[int, Sequence[str]]]:
        """(row number, cells) for every row after the header, blank ones included, padded to
        the header's width; ContactsError at a row with more fields than the header."""
        rows = self._rows()
        _, header = next(rows)
        width = len(header)
        for row, cells in rows:
            if len(cells) > width:
                fields = f"row has {len(cells)} fields, the header has {width}"
                raise ContactsError(f"{self.source}:{row}: {fields}")
            yield row, cells + [""] * (width - len(cells))

    def _rows(self) -> Generator[tuple[int, list[str]], None, None]:
        """(row number, fields) from the header on; read errors as ContactsError."""
        try:
            with self.path.open(encoding=self.encoding, newline="") as file:
                yield from self._parsed(file)
        except UnicodeDecodeError as exc:
            raise ContactsError(f"{self.source}: not {self.encoding} text: {exc.reason}") from None
        except OSError as exc:
            raise open_error(self.path, exc) from None

    def _parsed(self, file: TextIO) -> Iterator[tuple[int, list[str]]]:
        for _ in range(self.leading_blank):
            file.readline()
        lines = _Lines(file)
        parse = partial(csv.reader, delimiter=self.delimiter, skipinitialspace=True)
        # Strict, so that a quote never closed is an error rather than the rest of the file in
        # one value. A row the strict reader refuses (text after a closing quote, or a quote
        # still open at the end) is read again leniently, as spreadsheets read it ("x" y is
        # x y), with a marker line after the file's last: a row that takes it in never closed.
        reader = parse(lines, strict=True)
        row = self.header_row  # a quoted line break stays inside its row
        while True:
            lines.read.clear()
            try:
                cells = next(reader, None)
            except csv.Error:
                cells = next(parse(chain(list(lines.read), lines, [_OPEN_AT_END])))
                if any(_OPEN_AT_END in cell for cell in cells):
                    message = 'a quoted value is never closed (stray ")'
                    raise ContactsError(f"{self.source}:{row}: {message}") from None
            if cells is None:
                return
            yield row, cells
            row += 1


class _Lines:
    """A text file's lines, keeping those read for the current row."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self.read: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._file)
        self.read.append(line)
        return line


def _line_naming(lines: list[str], column: str, delimiter: str | None) -> int:
    """The first of the first lines with a field naming ``column`` (0 when none): the header
    below the title lines a spreadsheet may export above the list."""
    for number, line in enumerate(lines[:HEADER_SEARCH_ROWS]):
        for candidate in delimiter or _DELIMITERS:
            fields = next(csv.reader([line], delimiter=candidate, skipinitialspace=True), [])
            if any(_names_column(field, column) for field in fields):
                return number
    return 0


def _detect_encoding(path: Path) -> str:
    """UTF-16 or UTF-8 by byte-order mark, else UTF-8 when it decodes, else Windows-1252."""
    with path.open("rb") as file:
        start = file.read(4)
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if start.startswith(b"PK\x03\x04"):
        raise ContactsError(f"{path.name}: this is a workbook, not text; name it .xlsx")
    failure = _first_utf8_failure(path)
    if failure is None:
        return "utf-8-sig" if start.startswith(codecs.BOM_UTF8) else "utf-8"
    offset, not_cp1252 = failure
    if not not_cp1252:
        bad = _first_non_cp1252(path)
        if bad is None:
            return "cp1252"
        offset = bad
    raise ContactsError(_bad_byte_message(path, offset))


def _blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """The file's bytes as (offset, block), each block ending after a line break or at the end."""
    offset, carry = 0, b""
    with path.open("rb") as file:
        while data := file.read(_BLOCK_BYTES):
            data = carry + data
            cut = data.rfind(b"\n") + 1
            block, carry = data[:cut], data[cut:]
            if block:
                yield offset, block
                offset += len(block)
    if carry:
        yield offset, carry


def _first_utf8_failure(path: Path) -> tuple[int, bool] | None:
    """None for clean UTF-8; else the offset of the first bad byte, and whether the file surely
    is not Windows-1252 either (a NUL byte, or multi-byte UTF-8 before the bad byte)."""
    saw_utf8 = False
    for offset, block in _blocks(path):
        try:
            block.decode("utf-8")
        except UnicodeDecodeError as exc:
            end = exc.start
        else:
            end = len(block)
        nul = block.find(b"\x00", 0, end)  # a NUL before the byte UTF-8 stopped at comes first
        if nul >= 0:
            return offset + nul, True
        if end < len(block):
            return offset + end, saw_utf8 or not block[:end].isascii()
        saw_utf8 = saw_utf8 or not block.isascii()
    return None


def _first_non_cp1252(path: Path) -> int | None:
    """The offset of the first byte that sensible Windows-1252 text does not contain, if any."""
    for offset, block in _blocks(path):
        match = _NOT_CP1252_TEXT.search(block)
        if match:
            return offset + match.start()
    return None


def _bad_byte_message(path: Path, offset: int) -> str:
    line = 1
    for start, block in _blocks(path):
        if start + len(block) > offset:
            line += block.count(b"\n", 0, offset - start)
            value = block[offset - start]
            break
        line += block.count(b"\n")
    return (
        f"{path.name}: line {line}, byte {offset}: 0x{value:02X} is neither UTF-8 nor "
        "Windows-1252 text; save the file as UTF-8 (CSV UTF-8 in Excel)"
    )


def _sample_lines(raw: bytes, encoding: str, complete: bool) -> list[str]:
    """The lines of the file's first bytes. The last may be cut off by the sample's end; it is
    kept, since it may be the header itself, or the only row to guess the delimiter from."""
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw, final=complete)
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter the sample uses: csv.Sniffer's guess when the header holds it, else the
    candidate the header holds most often; "," for a single column."""
    header = lines[0]
    try:
        guess = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        guess = ""
    if guess and guess in header:
        return guess
    return max(_DELIMITERS, key=header.count)


class _SheetTable:
    """One sheet of a workbook (.xlsx, .ods, .xls), values as the sheet displays them.

    The sheet is the configured one, else the first whose header row holds the id column (title
    rows above it skipped), else the first. The table spans the header's named cells, so a
    sheet may start it in column B or row 3.
    """

    def __init__(
        self, path: Path, sheet: str | int | None, header_row: int | None, id_column: str | None
    ) -> None:
        self.path, self.source = path, path.name
        self._workbook = open_workbook(path)
        names = self._workbook.sheet_names()
        if not names:
            raise ContactsError(f"{self.source}: the workbook has no sheet")
        if sheet is not None:
            chosen = [_sheet_index(sheet, names, self.source)]
        elif header_row is not None or id_column is None:
            chosen = [0]
        else:
            chosen = list(range(len(names)))
        wanted = None if header_row is not None else id_column
        found = None
        for index in chosen:
            found = self._header(index, header_row, wanted)
            if found is not None:
                break
        if found is None:
            raise self._no_header(names, chosen, header_row, wanted)
        self.sheet, self.sheet_name = index, names[index]
        self.header_row, cells = found.number, found.cells
        named = [index for index, cell in enumerate(cells) if cell.strip()]
        self._start, self._end = named[0], named[-1] + 1
        self.header = cells[self._start : self._end]
        self.description = (
            f"{self.source}, sheet {self.sheet_name!r}, header on row {self.header_row}"
        )

    def column_label(self, index: int) -> str:
        """How the sheet names the table's column ``index`` (from 0): "column C"."""
        return f"column {column_letter(self._start + index)}"

    def records(self) -> Iterator[tuple[int, Sequence[str]]]:
        """(row number, cells) for every row after the header, padded to the header's width."""
        start, end = self._start, self._end
        for row in self._workbook.rows(self.sheet):
            if row.number <= self.header_row:
                continue
            cells = row.cells
            if len(cells) > end or any(cells[:start]):
                outside = [
                    i for i, cell in enumerate(cells) if not start <= i < end and cell.strip()
                ]
                if outside:
                    raise ContactsError(
                        f"{self.source}:{row.number}: column {column_letter(outside[0])} has a "
                        "value but no name in the header"
                    )
            uncached = [column for column in row.uncached if start <= column < end]
            if uncached:
                raise self._uncached(row.number, uncached)
            part = cells[start:end]
            yield row.number, part + [""] * (end - start - len(part))

    def _header(self, index: int, header_row: int | None, id_column: str | None) -> SheetRow | None:
        """The header row of sheet ``index``: row ``header_row``, else the first row holding
        ``id_column`` among the first rows, else (no id column asked for) the first row."""
        with closing(self._workbook.rows(index)) as rows:
            for row in rows:
                if header_row is not None:
                    if row.number > header_row:
                        break
                    if row.number == header_row and any(map(str.strip, row.cells)):
                        return row
                elif id_column is None:
                    if any(map(str.strip, row.cells)):
                        return row
                elif row.number > HEADER_SEARCH_ROWS:
                    break
                elif any(_names_column(cell, id_column) for cell in row.cells):
                    return row
        return None

    def _no_header(
        self, names: list[str], tried: list[int], header_row: int | None, id_column: str | None
    ) -> ContactsError:
        sheets = ", ".join(map(repr, names))
        where = f"sheet {names[tried[0]]!r}" if len(tried) == 1 else "any sheet"
        if header_row is not None:
            return ContactsError(
                f"{self.source}: row {header_row} of {where} is empty; campaign.contacts_header_row "
                f"must name the row that holds the column names (sheets: {sheets})"
            )
        if id_column is None:
            return ContactsError(f"{self.source}: {where} is empty; a row must name the columns")
        return ContactsError(
            f"{self.source}: no header row with a column {id_column!r} in the first "
            f"{HEADER_SEARCH_ROWS} rows of {where} (sheets: {sheets}); set campaign.id_column to "
            "the column that identifies contacts, or campaign.contacts_sheet and "
            "campaign.contacts_header_row"
        )

    def _uncached(self, row: int, columns: list[int]) -> ContactsError:
        cells = ", ".join(
            f"{column_letter(column)}{row} ({self.header[column - self._start].strip()})"
            for column in columns
        )
        return ContactsError(
            f"{self.source}:{row}: {cells}: a formula without a saved value (the file was written "
            "by a program that does not calculate); open it in a spreadsheet program and save it"
        )


def _sheet_index(sheet: str | int, names: list[str], source: str) -> int:
    """The position of the configured sheet: its name, or its number from 1."""
    if isinstance(sheet, int):
        if 1 <= sheet <= len(names):
            return sheet - 1
    elif sheet in names:
        return names.index(sheet)
    else:
        folded = [name.casefold() for name in names]
        if sheet.casefold() in folded:
            return folded.index(sheet.casefold())
    listed = ", ".join(f"{number} {name!r}" for number, name in enumerate(names, start=1))
    raise ContactsError(f"{source}: no sheet {sheet!r} (sheets: {listed})")


def _names_column(cell: str, column: str) -> bool:
    """Whether a header cell names ``column``, as written or as its alias ("Email" for email)."""
    cell = cell.strip()
    return cell == column or column_alias(cell) == column
