"""Workbooks (.xlsx, .ods, .xls) read row by row as the sheet displays each cell.

An .xlsx stores numbers and their number format apart: the text is made with `numformat`.
An .ods stores the displayed text beside the value, and that text is used. An .xls is read with
xlrd, its numbers shown through `numformat` too. Formula cells are read from the value the
spreadsheet program saved; a formula saved without one (a file written by a script and never
opened in a spreadsheet program) is reported in `SheetRow.uncached`, never read as blank.

.xlsx and .ods are parsed with expat as they are decompressed: memory stays flat, and it is
several times faster than openpyxl's read-only mode.
"""

from __future__ import annotations

import html
import posixpath
import re
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar
from xml.parsers import expat

from .errors import ContactsError
from .numformat import BUILTIN_FORMATS, format_number, general

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".ods", ".xls")
_READ_BYTES = 1 << 16
_XLSX_ROOT_RELS = "_rels/.rels"
_ODS_CONTENT = "content.xml"
_ODS_TABLE = re.compile(rb"<table:table\s[^>]*?table:name=\"([^\"]*)\"")
_CFB_MAGIC = b"\xd0\xcf\x11\xe0"  # an OLE compound file: an .xls, or an encrypted .xlsx


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One row of a sheet that holds something: its number and each cell's displayed text."""

    number: int  # as the spreadsheet shows it, from 1
    cells: list[str]  # from column A; cells right of the last filled one are left out
    uncached: tuple[int, ...] = ()  # columns (from 0) holding a formula without a saved value


class Workbook:
    """A workbook's sheet names and rows; subclasses read one file format."""

    def __init__(self, path: Path) -> None:
        self.path, self.source = path, path.name

    def sheet_names(self) -> list[str]:
        """Every sheet's name, in the workbook's order."""
        raise NotImplementedError

    def rows(self, index: int) -> Generator[SheetRow, None, None]:
        """The rows of sheet ``index`` (from 0) that hold something, in order."""
        raise NotImplementedError


def open_workbook(path: Path) -> Workbook:
    """The workbook at ``path``, by its suffix; ContactsError when it cannot be opened."""
    suffix = path.suffix.lower()
    try:
        with path.open("rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise open_error(path, exc) from None
    if suffix == ".xls" and magic != b"PK\x03\x04":  # else an .xlsx under an old name
        return _XlsWorkbook(path)
    if magic == _CFB_MAGIC:
        raise ContactsError(
            f"{path.name}: a password-protected workbook or an old .xls under another name; "
            "save it without a password, as .xlsx"
        )
    if suffix == ".ods":
        return _OdsWorkbook(path)
    return _XlsxWorkbook(path)


def open_error(path: Path, exc: OSError) -> ContactsError:
    """A one-line ContactsError for a file that cannot be opened."""
    if isinstance(exc, FileNotFoundError):
        return ContactsError(f"{path.name}: file not found ({path})")
    if isinstance(exc, IsADirectoryError):
        return ContactsError(f"{path.name}: is a directory, not a contact list ({path})")
    if isinstance(exc, PermissionError):
        return ContactsError(f"{path.name}: permission denied ({path})")
    return ContactsError(f"{path.name}: cannot read: {exc.strerror or exc}")


def column_letter(index: int) -> str:
    """The spreadsheet name of column ``index`` (from 0): 0 → A, 27 → AB."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


class _Zipped(Workbook):
    """A workbook that is a zip of XML parts (.xlsx, .ods)."""

    kind = ".xlsx"

    def _open(self, member: str) -> IO[bytes]:
        try:
            archive = zipfile.ZipFile(self.path)
        except OSError as exc:
            raise open_error(self.path, exc) from None
        except zipfile.BadZipFile:
            raise self._unreadable("not a zip archive") from None
        try:
            return archive.open(member)
        except KeyError:
            raise self._unreadable(f"it has no {member}") from None
        finally:
            archive.close()  # the member stays readable: it holds its own file handle

    def _parse(self, member: str, handlers: _Handlers) -> Iterator[None]:
        """Feeds ``member`` to an expat parser with ``handlers``; yields after each block."""
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.buffer_text = True
        parser.StartElementHandler = handlers.start
        parser.EndElementHandler = handlers.end
        parser.CharacterDataHandler = handlers.text
        with self._open(member) as stream:
            try:
                while block := stream.read(_READ_BYTES):
                    parser.Parse(block, False)
                    yield
                parser.Parse(b"", True)
            except expat.ExpatError as exc:
                raise self._unreadable(f"{member}: {exc}") from None
            # A damaged archive, or a number or string index that is no number or too large.
            except (
                zipfile.BadZipFile,
                OSError,
                EOFError,
                zlib.error,
                ValueError,
                IndexError,
            ) as exc:
                raise self._unreadable(f"{member}: {exc}") from None
        yield

    def _unreadable(self, why: str) -> ContactsError:
        return ContactsError(f"{self.source}: not a readable {self.kind} workbook: {why}")


class _Handlers:
    """Expat callbacks; element names arrive as "namespace local-name"."""

    def start(self, name: str, attrs: dict[str, str]) -> None:
        """An element opens."""

    def end(self, name: str) -> None:
        """An element closes."""

    def text(self, data: str) -> None:
        """Character data."""


_H = TypeVar("_H", bound=_Handlers)


def _local(name: str) -> str:
    return name[name.rfind(" ") + 1 :]


class _Collect(_Handlers):
    """Calls ``found(local name, attributes)`` for every element."""

    def __init__(self, found: Callable[[str, dict[str, str]], None]) -> None:
        self.found = found

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.found(_local(name), {_local(key): value for key, value in attrs.items()})


class _XlsxWorkbook(_Zipped):
    """An Office Open XML workbook (.xlsx, .xlsm)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._names: set[str] | None = None
        self._workbook_part = (
            self._target("", _XLSX_ROOT_RELS, "officeDocument") or "xl/workbook.xml"
        )
        self._sheets: list[tuple[str, str]] = []  # (name, relationship id)
        self.date1904 = False

        def found(tag: str, attrs: dict[str, str]) -> None:
            if tag == "sheet":
                self._sheets.append((attrs.get("name", ""), attrs.get("id", "")))
            elif tag == "workbookPr":
                self.date1904 = attrs.get("date1904", "0").lower() in ("1", "true")

        self._read_all(self._workbook_part, _Collect(found))
        self._strings: list[str] | None = None
        self._formats: list[str] | None = None

    def sheet_names(self) -> list[str]:
        return [name for name, _ in self._sheets]

    def rows(self, index: int) -> Generator[SheetRow, None, None]:
        name, relation = self._sheets[index]
        part = self._related(relation, by_id=True)
        if part is None:
            raise self._unreadable(f"sheet {name!r} has no part")
        handlers = _XlsxSheet(self._shared_strings(), self._number_formats(), self.date1904)
        for _ in self._parse(part, handlers):
            yield from handlers.done
            handlers.done.clear()

    def _read_all(self, member: str, handlers: _Handlers) -> None:
        for _ in self._parse(member, handlers):
            pass

    def _members(self) -> set[str]:
        if self._names is None:
            try:
                with zipfile.ZipFile(self.path) as archive:
                    self._names = set(archive.namelist())
            except zipfile.BadZipFile:
                raise self._unreadable("not a zip archive") from None
            except OSError as exc:
                raise open_error(self.path, exc) from None
        return self._names

    def _related(self, wanted: str, by_id: bool = False) -> str | None:
        """The workbook's part that one of its relationships points at."""
        folder, name = posixpath.split(self._workbook_part)
        return self._target(folder, posixpath.join(folder, "_rels", name + ".rels"), wanted, by_id)

    def _target(self, folder: str, rels: str, wanted: str, by_id: bool = False) -> str | None:
        """The part a relationship in ``rels`` points at, by its Id or by the end of its Type;
        None when there is none or the archive lacks it."""
        if rels not in self._members():
            return None
        targets: list[str] = []

        def found(tag: str, attrs: dict[str, str]) -> None:
            key = attrs.get("Id", "") if by_id else attrs.get("Type", "").rsplit("/", 1)[-1]
            if tag == "Relationship" and key == wanted:
                targets.append(attrs.get("Target", ""))

        self._read_all(rels, _Collect(found))
        if not targets:
            return None
        target = targets[0]
        part = (
            target[1:]
            if target.startswith("/")
            else posixpath.normpath(posixpath.join(folder, target))
        )
        return part if part in self._members() else None

    def _shared_strings(self) -> list[str]:
        if self._strings is None:
            self._strings = self._read_related("sharedStrings", _SharedStrings()).strings
        return self._strings

    def _number_formats(self) -> list[str]:
        """The number format code of each cell style, by style number."""
        if self._formats is None:
            styles = self._read_related("styles", _Styles())
            codes = {**BUILTIN_FORMATS, **styles.codes}
            self._formats = [codes.get(number, "General") for number in styles.cell_formats]
        return self._formats

    def _read_related(self, kind: str, handlers: _H) -> _H:
        """``handlers`` after reading the workbook's part of ``kind``, if it has one."""
        part = self._related(kind)
        if part is not None:
            self._read_all(part, handlers)
        return handlers


class _SharedStrings(_Handlers):
    """sharedStrings.xml: each <si>'s text, phonetic guides (<rPh>) left out."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._parts: list[str] = []
        self._in_text = False
        self._phonetic = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        tag = _local(name)
        if tag == "t":
            self._in_text = not self._phonetic
        elif tag == "rPh":
            self._phonetic += 1

    def end(self, name: str) -> None:
        tag = _local(name)
        if tag == "t":
            self._in_text = False
        elif tag == "rPh":
            self._phonetic -= 1
        elif tag == "si":
            self.strings.append("".join(self._parts))
            self._parts = []

    def text(self, data: str) -> None:
        if self._in_text:
            self._parts.append(data)


class _Styles(_Handlers):
    """styles.xml: custom number formats, and the number format of each cell style (cellXfs)."""

    def __init__(self) -> None:
        self.codes: dict[int, str] = {}
        self.cell_formats: list[int] = []
        self._in_cell_xfs = False

    def start(self, name: str, attrs: dict[str, str]) -> None:
        tag = _local(name)
        if tag == "numFmt":
            self.codes[int(attrs.get("numFmtId", "0"))] = attrs.get("formatCode", "General")
        elif tag == "cellXfs":
            self._in_cell_xfs = True
        elif tag == "xf" and self._in_cell_xfs:
            self.cell_formats.append(int(attrs.get("numFmtId", "0")))

    def end(self, name: str) -> None:
        if _local(name) == "cellXfs":
            self._in_cell_xfs = False


class _XlsxSheet(_Handlers):
    """A worksheet part: rows of displayed text, collected in ``done`` as they end."""

    def __init__(self, strings: list[str], formats: list[str], date1904: bool) -> None:
        self.strings, self.formats, self.date1904 = strings, formats, date1904
        self.done: list[SheetRow] = []
        self._row = 0
        self._cells: list[str] = []
        self._uncached: list[int] = []
        self._column = -1
        self._type = "n"
        self._style = 0
        self._formula = False
        self._has_value = False
        self._value: list[str] | None = None  # collecting <v> or <t> text
        self._text: list[str] = []
        self._columns: dict[str, int] = {}

    def start(self, name: str, attrs: dict[str, str]) -> None:
        tag = name[name.rfind(" ") + 1 :]
        if tag == "c":
            reference = attrs.get("r")
            self._column = self._column_of(reference) if reference else self._column + 1
            self._type = attrs.get("t", "n")
            self._style = int(attrs.get("s", "0"))
            self._formula = self._has_value = False
            self._text = []
        elif tag in ("v", "t"):
            self._value = self._text
            self._has_value = True
        elif tag == "f":
            self._formula = True
        elif tag == "row":
            reference = attrs.get("r")
            self._row = int(reference) if reference else self._row + 1
            self._column = -1
            self._cells, self._uncached = [], []

    def end(self, name: str) -> None:
        tag = name[name.rfind(" ") + 1 :]
        if tag in ("v", "t"):
            self._value = None
        elif tag == "c":
            self._end_cell()
        elif tag == "row" and (self._cells or self._uncached):
            self.done.append(SheetRow(self._row, self._cells, tuple(self._uncached)))

    def text(self, data: str) -> None:
        if self._value is not None:
            self._value.append(data)

    def _column_of(self, reference: str) -> int:
        letters = reference.rstrip("0123456789")
        index = self._columns.get(letters)
        if index is None:
            index = self._columns[letters] = _column_index(letters)
        return index

    def _end_cell(self) -> None:
        raw = "".join(self._text)
        if not raw:
            # An empty text result is saved as <v></v> with t="str"; a number cannot be empty.
            if self._formula and (not self._has_value or self._type != "str"):
                self._uncached.append(self._column)
            return
        kind = self._type
        if kind == "s":
            text = self.strings[int(raw)]
        elif kind == "n":
            code = self.formats[self._style] if self._style < len(self.formats) else "General"
            number = float(raw)
            text = (
                general(number) if code == "General" else format_number(number, code, self.date1904)
            )
        elif kind == "b":
            text = "TRUE" if raw.strip() in ("1", "true") else "FALSE"
        else:  # str (a formula's text), inlineStr, e (an error such as #N/A), d (ISO date)
            text = raw
        if text:
            cells = self._cells
            if len(cells) < self._column:
                cells.extend([""] * (self._column - len(cells)))
            if len(cells) == self._column:
                cells.append(text)
            else:
                cells[self._column] = text


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1


_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0 "
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0 "
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0 "
_ODS_VALUE_ATTRS = ("value", "date-value", "time-value", "boolean-value", "string-value")


class _OdsWorkbook(_Zipped):
    """An OpenDocument spreadsheet (.ods): every cell's text as LibreOffice displays it."""

    kind = ".ods"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._names: list[str] | None = None
        self._open(_ODS_CONTENT).close()

    def sheet_names(self) -> list[str]:
        if self._names is None:
            names: list[str] = []
            carry = b""
            with self._open(_ODS_CONTENT) as stream:
                while block := stream.read(_READ_BYTES):
                    data = carry + block
                    cut = data.rfind(b"<")
                    names.extend(
                        html.unescape(m.group(1).decode())
                        for m in _ODS_TABLE.finditer(data, 0, cut)
                    )
                    carry = data[cut:]
            names.extend(html.unescape(m.group(1).decode()) for m in _ODS_TABLE.finditer(carry))
            self._names = names
        return self._names

    def rows(self, index: int) -> Generator[SheetRow, None, None]:
        handlers = _OdsSheet(index)
        for _ in self._parse(_ODS_CONTENT, handlers):
            yield from handlers.done
            handlers.done.clear()
            if handlers.finished:
                return


class _OdsSheet(_Handlers):
    """content.xml: rows of table ``wanted`` (from 0), each cell's paragraphs as its text."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.done: list[SheetRow] = []
        self.finished = False
        self._table = -1
        self._row = 0  # rows before the current one
        self._row_repeat = 1
        self._cells: list[str] = []
        self._uncached: list[int] = []
        self._column = 0  # columns before the current cell
        self._cell_repeat = 1
        self._paragraphs: list[list[str]] | None = None
        self._fallback = ""
        self._formula = False
        self._skip = 0  # inside an annotation (a comment): not part of the cell's text

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if name == _TABLE + "table":
            self._table += 1
            self._row = 0
        elif self._table != self.wanted:
            return
        elif name == _TABLE + "table-row":
            self._row_repeat = int(attrs.get(_TABLE + "number-rows-repeated", "1"))
            self._cells, self._uncached, self._column = [], [], 0
        elif name in (_TABLE + "table-cell", _TABLE + "covered-table-cell"):
            self._cell_repeat = int(attrs.get(_TABLE + "number-columns-repeated", "1"))
            self._paragraphs = []
            kind = attrs.get(_OFFICE + "value-type")
            self._formula = _TABLE + "formula" in attrs and kind is None
            self._fallback = next(
                (attrs[_OFFICE + key] for key in _ODS_VALUE_ATTRS if _OFFICE + key in attrs), ""
            )
        elif self._paragraphs is None:
            return
        elif name == _OFFICE + "annotation":
            self._skip += 1
        elif self._skip:
            return
        elif name in (_TEXT + "p", _TEXT + "h"):
            self._paragraphs.append([])
        elif name == _TEXT + "s" and self._paragraphs:
            self._paragraphs[-1].append(" " * int(attrs.get(_TEXT + "c", "1")))
        elif name == _TEXT + "tab" and self._paragraphs:
            self._paragraphs[-1].append("\t")
        elif name == _TEXT + "line-break" and self._paragraphs:
            self._paragraphs[-1].append("\n")

    def end(self, name: str) -> None:
        if self._table != self.wanted:
            return
        if name == _OFFICE + "annotation":
            self._skip -= 1
        elif name in (_TABLE + "table-cell", _TABLE + "covered-table-cell"):
            self._end_cell()
        elif name == _TABLE + "table-row":
            if self._cells or self._uncached:
                for number in range(self._row + 1, self._row + 1 + self._row_repeat):
                    self.done.append(SheetRow(number, list(self._cells), tuple(self._uncached)))
            self._row += self._row_repeat
        elif name == _TABLE + "table":
            self.finished = True

    def text(self, data: str) -> None:
        if self._paragraphs and not self._skip and self._table == self.wanted:
            self._paragraphs[-1].append(data)

    def _end_cell(self) -> None:
        paragraphs = self._paragraphs or []
        self._paragraphs = None
        text = "\n".join("".join(parts) for parts in paragraphs) if paragraphs else self._fallback
        if text:
            self._cells.extend([""] * (self._column - len(self._cells)))
            self._cells.extend([text] * self._cell_repeat)
        elif self._formula:
            self._uncached.extend(range(self._column, self._column + self._cell_repeat))
        self._column += self._cell_repeat


class _XlsWorkbook(Workbook):
    """An Excel 97-2003 workbook (.xls), read with xlrd; numbers shown through their formats."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import xlrd
        from xlrd.biffh import XLRDError

        try:
            self._book = xlrd.open_workbook(str(path), formatting_info=True, on_demand=True)
        except OSError as exc:
            raise open_error(path, exc) from None
        except (XLRDError, AssertionError, IndexError, ValueError) as exc:
            raise ContactsError(f"{self.source}: not a readable .xls workbook: {exc}") from None

    def sheet_names(self) -> list[str]:
        return list(self._book.sheet_names())

    def rows(self, index: int) -> Generator[SheetRow, None, None]:
        import xlrd
        from xlrd.biffh import XLRDError

        book = self._book
        try:
            sheet = book.sheet_by_index(index)
        except (XLRDError, AssertionError, IndexError, ValueError) as exc:
            raise ContactsError(f"{self.source}: not a readable .xls workbook: {exc}") from None
        date1904 = book.datemode == 1
        for row in range(sheet.nrows):
            cells = []
            for cell in sheet.row(row):
                kind, value = cell.ctype, cell.value
                if kind in (xlrd.XL_CELL_NUMBER, xlrd.XL_CELL_DATE):
                    key = book.xf_list[cell.xf_index or 0].format_key
                    code = book.format_map[key].format_str if key in book.format_map else "General"
                    cells.append(format_number(float(value), code or "General", date1904))
                elif kind == xlrd.XL_CELL_BOOLEAN:
                    cells.append("TRUE" if value else "FALSE")
                elif kind == xlrd.XL_CELL_ERROR:
                    cells.append(xlrd.error_text_from_code.get(int(value), "#VALUE!"))
                else:
                    cells.append(str(value))
            while cells and not cells[-1]:
                cells.pop()
            if cells:
                yield SheetRow(row + 1, cells)
