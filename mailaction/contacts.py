"""The contact list: a CSV, TSV or XLSX file streamed as rows of text; duplicate checks."""

from __future__ import annotations

import codecs
import csv
import datetime
import hashlib
import re
from array import array
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zipfile import BadZipFile

from .errors import ContactsError, Problem
from .keys import contact_key

if TYPE_CHECKING:
    import pandas as pd

# pandas and openpyxl (~0.2 s to import) are imported only where a file is read: worker
# processes of a parallel validate import this module for Contact and never read a file.

_TEXT_SUFFIXES = {".csv": None, ".txt": None, ".tsv": "\t"}  # suffix -> fixed delimiter
_DELIMITERS = ",;\t|"
_SAMPLE_BYTES = 64 * 1024
_BLOCK_BYTES = 1024 * 1024
# Bytes no sensible text file holds: C0 controls other than tab/LF/CR, and the five byte values
# Windows-1252 leaves undefined.
_NOT_CP1252_TEXT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x81\x8d\x8f\x90\x9d]")
_UNCLOSED_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


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
    """A contact list file: its column names, and its contacts streamed in chunks."""

    def __init__(self, path: Path, chunk_size: int = 10_000) -> None:
        self.path = Path(path)
        self.source = self.path.name
        suffix = self.path.suffix.lower()
        if suffix == ".xlsx":
            self._table: _XlsxTable | _TextTable = _XlsxTable(self.path)
        elif suffix in _TEXT_SUFFIXES:
            self._table = _TextTable(self.path, _TEXT_SUFFIXES[suffix], chunk_size)
        else:
            raise ContactsError(
                f"{self.source}: unknown kind of contact list {suffix or '(no extension)'!r}; "
                "use .csv, .tsv, .txt or .xlsx"
            )
        self.columns = _column_names(self._table, self.source)

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


def _column_names(table: _TextTable | _XlsxTable, source: str) -> list[str]:
    """The trimmed header without unnamed columns at its end (a common spreadsheet leftover);
    every column before them needs a name, and names must differ."""
    names = [cell.strip() for cell in table.header]
    while names and not names[-1]:
        names.pop()
    place = f"{source}:{table.header_row}"
    for index, name in enumerate(names):
        if not name:
            raise ContactsError(f"{place}: {table.column_label(index)} of the header has no name")
        earlier = names.index(name)
        if earlier != index:
            raise ContactsError(
                f"{place}: {table.column_label(index)} of the header repeats the name {name!r} "
                f"of {table.column_label(earlier)}"
            )
    return names


def _open_error(path: Path, exc: OSError) -> ContactsError:
    if isinstance(exc, FileNotFoundError):
        return ContactsError(f"{path.name}: file not found ({path})")
    if isinstance(exc, IsADirectoryError):
        return ContactsError(f"{path.name}: is a directory, not a contact list ({path})")
    if isinstance(exc, PermissionError):
        return ContactsError(f"{path.name}: permission denied ({path})")
    return ContactsError(f"{path.name}: cannot read: {exc.strerror or exc}")


class _TextTable:
    """A delimited text file read with pandas' C parser, every value as text."""

    def __init__(self, path: Path, delimiter: str | None, chunk_size: int) -> None:
        self.path, self.source, self.chunk_size = path, path.name, chunk_size
        try:
            self.encoding = _detect_encoding(path)
            with path.open("rb") as file:
                raw = file.read(_SAMPLE_BYTES)
        except OSError as exc:
            raise _open_error(path, exc) from None
        lines = _sample_lines(raw, self.encoding, complete=len(raw) < _SAMPLE_BYTES)
        content = [line for line in lines if line.strip(" \t" + _DELIMITERS)]
        if not content:
            raise ContactsError(
                f"{self.source}: the file is empty; the first row must name the columns"
            )
        self.delimiter = delimiter or _sniff_delimiter(content)
        self.leading_blank = next(
            number for number, line in enumerate(lines) if line.strip(" \t" + self.delimiter)
        )
        self.header_row = self.leading_blank + 1
        with closing(self._chunks(1)) as chunks:
            self.header: list[str] = next(chunks).iloc[0].tolist()

    def column_label(self, index: int) -> str:
        """How to name the header's column ``index`` (from 0) in a message: "column 3"."""
        return f"column {index + 1}"

    def records(self) -> Iterator[tuple[int, Sequence[str]]]:
        """(row number, cells) for every row after the header, blank ones included."""
        for chunk in self._chunks(self.chunk_size):
            first_row = self.header_row + int(chunk.index[0])
            # Whole columns as lists: itertuples fetches pandas 3 strings one cell at a time.
            rows = zip(*(column.tolist() for _, column in chunk.items()))
            for row, cells in enumerate(rows, start=first_row):
                if row != self.header_row:
                    yield row, cells

    def _chunks(self, size: int) -> Iterator[pd.DataFrame]:
        """The file as data frames of text, the header row first; read errors as ContactsError."""
        import pandas as pd

        # The header is read as data, so the parser measures every row against its width.
        try:
            reader = pd.read_csv(
                self.path, sep=self.delimiter, encoding=self.encoding, header=None, dtype=str,
                na_filter=False, keep_default_na=False, skip_blank_lines=False, engine="c",
                skiprows=self.leading_blank, quotechar='"', doublequote=True, skipinitialspace=True,
                chunksize=size,
            )  # fmt: skip
            with reader:
                yield from reader
        except pd.errors.ParserError as exc:
            raise self._parser_error(exc) from None
        except UnicodeDecodeError as exc:
            raise ContactsError(f"{self.source}: not {self.encoding} text: {exc.reason}") from None
        except OSError as exc:
            raise _open_error(self.path, exc) from None

    def _parser_error(self, exc: pd.errors.ParserError) -> ContactsError:
        """The parser's complaint, placed at the row the organiser sees."""
        unclosed = _UNCLOSED_QUOTE.search(str(exc))
        if unclosed:
            row = int(unclosed.group(1)) + 1
            return ContactsError(f'{self.source}:{row}: a quoted value is never closed (stray ")')
        try:
            with self.path.open(encoding=self.encoding, newline="") as file:
                rows = enumerate(
                    csv.reader(file, delimiter=self.delimiter, skipinitialspace=True), start=1
                )
                width = next(len(cells) for row, cells in rows if row == self.header_row)
                for row, cells in rows:
                    if len(cells) > width:
                        fields = f"row has {len(cells)} fields, the header has {width}"
                        return ContactsError(f"{self.source}:{row}: {fields}")
        except (csv.Error, StopIteration):
            pass
        return ContactsError(f"{self.source}: cannot be read as a table: {exc}")


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
            return offset + exc.start, saw_utf8 or not block[: exc.start].isascii()
        nul = block.find(b"\x00")
        if nul >= 0:
            return offset + nul, True
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
    """The lines of the file's first bytes; a line cut off by the sample's end is dropped."""
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw, final=complete)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines if complete or len(lines) == 1 else lines[:-1]


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


class _XlsxTable:
    """The first sheet of an Excel workbook, values as the sheet shows them.

    The table spans the header's named cells, so a sheet may start it in column B or row 3.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.source = path, path.name
        with closing(self._rows()) as rows:
            found = next(((row, cells) for row, cells in rows if any(map(str.strip, cells))), None)
        if found is None:
            raise ContactsError(
                f"{self.source}: the first sheet is empty; a row must name the columns"
            )
        self.header_row, cells = found
        named = [index for index, cell in enumerate(cells) if cell.strip()]
        self._start, self._end = named[0], named[-1] + 1
        self.header = cells[self._start : self._end]

    def column_label(self, index: int) -> str:
        """How the sheet names the table's column ``index`` (from 0): "column C"."""
        from openpyxl.utils import get_column_letter

        return f"column {get_column_letter(self._start + index + 1)}"

    def records(self) -> Iterator[tuple[int, Sequence[str]]]:
        """(row number, cells) for every row after the header, padded to the header's width."""
        from openpyxl.utils import get_column_letter

        start, end = self._start, self._end
        for row, cells in self._rows():
            if row <= self.header_row:
                continue
            outside = [i for i, cell in enumerate(cells) if not start <= i < end and cell.strip()]
            if outside:
                column = get_column_letter(outside[0] + 1)
                raise ContactsError(
                    f"{self.source}:{row}: column {column} has a value but no name in the header"
                )
            part = cells[start:end]
            yield row, part + [""] * (end - start - len(part))

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            workbook = load_workbook(self.path, read_only=True, data_only=True)
        except OSError as exc:
            raise _open_error(self.path, exc) from None
        except (InvalidFileException, BadZipFile, KeyError, ValueError) as exc:
            raise ContactsError(f"{self.source}: not a readable .xlsx workbook: {exc}") from None
        try:
            sheet = workbook.worksheets[0]
            for row, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield row, [_cell_text(value) for value in values]
        finally:
            workbook.close()


def _cell_text(value: object) -> str:
    """A cell's value as the sheet shows it: 1234 not 1234.0, 0.3 not 0.30000000000000004."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return f"{value:.15g}"  # Excel shows at most 15 significant digits
    if isinstance(value, datetime.datetime):
        return value.date().isoformat() if value.time() == datetime.time() else str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)
