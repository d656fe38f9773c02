"""Contact lists: formats, encodings, delimiters, text values, row numbers, errors, duplicates."""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import os
import unicodedata
from pathlib import Path

import openpyxl
import pytest
from email_validator import validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailaction.contacts import Contact, ContactList, DuplicateFinder
from mailaction.errors import ContactsError, Problem

ROOT = Path(__file__).resolve().parent.parent
SUPPORTERS = ROOT / "contacts" / "supporters.csv"


def write(folder: Path, content: str | bytes, name: str = "contacts.csv") -> Path:
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    return [(contact.row, contact.values) for contact in ContactList(path)]


def error(path: Path) -> str:
    """The ContactsError message from opening and reading ``path``."""
    with pytest.raises(ContactsError) as caught:
        list(ContactList(path))
    return str(caught.value)


def workbook(path: Path, cells: dict[str, object]) -> Path:
    book = openpyxl.Workbook()
    for place, value in cells.items():
        book.active[place] = value
    book.save(path)
    return path


# --- formats and encodings ---


def test_utf8_csv_gives_columns_rows_and_source(tmp_path: Path) -> None:
    path = write(tmp_path, "email,first_name\nana@example.org,Ana\nzoe@example.org,Zoë\n")
    contacts = ContactList(path)
    assert contacts.columns == ["email", "first_name"]
    assert contacts.source == "contacts.csv"
    assert list(contacts) == [
        Contact(2, {"email": "ana@example.org", "first_name": "Ana"}, "contacts.csv"),
        Contact(3, {"email": "zoe@example.org", "first_name": "Zoë"}, "contacts.csv"),
    ]


def test_contact_get_gives_empty_text_for_unknown_columns() -> None:
    contact = Contact(2, {"email": "ana@example.org"}, "contacts.csv")
    assert contact.get("email") == "ana@example.org"
    assert contact.get("town") == ""


def test_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + "email,name\nana@example.org,Zoë\n".encode())
    assert ContactList(path).columns == ["email", "name"]
    assert rows(path) == [(2, {"email": "ana@example.org", "name": "Zoë"})]


def test_cp1252_file_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path, b"email;name\nzoe@example.org;Zo\xeb \x80\n")
    assert rows(path) == [(2, {"email": "zoe@example.org", "name": "Zoë €"})]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_byte_order_mark_is_decoded(tmp_path: Path, encoding: str) -> None:
    bom = {"utf-16": b"", "utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}
    text = "email\tname\nana@example.org\tАлёна, 王芳\n"
    path = write(tmp_path, bom[encoding] + text.encode(encoding))
    assert ContactList(path).columns == ["email", "name"]
    assert rows(path) == [(2, {"email": "ana@example.org", "name": "Алёна, 王芳"})]


@pytest.mark.parametrize(
    ("content", "bad", "line"),
    [
        pytest.param(b"email,name\nana@example.org,Ana\nbo@example.org,B\x81o\n", b"\x81", 3,
                     id="cp1252-undefined-byte"),
        pytest.param("email,name\nzoe@example.org,Zoë\n".encode() + b"bo@example.org,B\xe9o\n",
                     b"\xe9", 3, id="broken-utf8-after-utf8"),
        pytest.param(codecs.BOM_UTF8 + b"email,name\nbo@example.org,B\xe9o\n", b"\xe9", 2,
                     id="broken-utf8-after-bom"),
        pytest.param(b"email,name\nbo@example.org,B\x00o\n", b"\x00", 2, id="nul-byte"),
        pytest.param(b"email,name\nbo@example.org,B\x1bo\xe9\n", b"\x1b", 2, id="control-char"),
    ],
)  # fmt: skip
def test_bytes_that_are_not_text_are_refused_with_their_place(
    tmp_path: Path, content: bytes, bad: bytes, line: int
) -> None:
    message = error(write(tmp_path, content))
    place = f"line {line}, byte {content.index(bad)}"
    assert message.startswith(f"contacts.csv: {place}: 0x{bad.hex().upper()} is neither UTF-8")


def test_workbook_saved_as_csv_is_refused(tmp_path: Path) -> None:
    path = workbook(tmp_path / "contacts.csv", {"A1": "email"})
    assert ".xlsx" in error(path)


# --- delimiters ---


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str, suffix: str) -> None:
    lines = [["email", "name", "note"], ["ana@example.org", "Ana", "x, y; z | w"]]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(lines)
    path = write(tmp_path, buffer.getvalue(), "contacts" + suffix)
    assert rows(path) == [(2, dict(zip(*lines, strict=True)))]


def test_tsv_is_always_split_on_tabs(tmp_path: Path) -> None:
    path = write(tmp_path, "email\tname, title\nana@example.org\tAna; Dr, Prof\n", "list.tsv")
    assert rows(path) == [(2, {"email": "ana@example.org", "name, title": "Ana; Dr, Prof"})]


def test_header_delimiter_wins_over_a_sniffer_misled_by_the_data(tmp_path: Path) -> None:
    path = write(tmp_path, "email;name\nana@example.org;a,b,c,d\nbo@example.org;e,f,g,h\n")
    assert ContactList(path).columns == ["email", "name"]


def test_single_column_list(tmp_path: Path) -> None:
    path = write(tmp_path, "email\nana@example.org\nbo@example.org\n")
    assert rows(path) == [(2, {"email": "ana@example.org"}), (3, {"email": "bo@example.org"})]


# --- values stay text as written ---


def test_values_stay_text_exactly_as_written(tmp_path: Path) -> None:
    names = ["NA", "None", "null", "N/A", "NaN", "nan", "#N/A", "-", "TRUE", "1e5", "01234", "1.50"]
    lines = "".join(f"person{i}@example.org,{name}\n" for i, name in enumerate(names))
    path = write(tmp_path, "email,last_name\n" + lines + "extra@example.org,\n")
    values = [contact.values for contact in ContactList(path)]
    assert [value["last_name"] for value in values] == [*names, ""]
    assert all(type(cell) is str for value in values for cell in value.values())


def test_surrounding_whitespace_is_trimmed_from_values_and_headers(tmp_path: Path) -> None:
    path = write(tmp_path, ' email , first name \n  ana@example.org\t,"\tAna  Maria "\n')
    assert rows(path) == [(2, {"email": "ana@example.org", "first name": "Ana  Maria"})]


def test_quotes_after_spaces_still_quote(tmp_path: Path) -> None:
    path = write(tmp_path, 'email, name, note\nana@example.org, "Silva, Ana", "a ""b"""\n')
    assert rows(path) == [(2, {"email": "ana@example.org", "name": "Silva, Ana", "note": 'a "b"'})]


def test_short_rows_get_empty_cells(tmp_path: Path) -> None:
    path = write(tmp_path, "email,town,country\nana@example.org\nbo@example.org,Lyon\n")
    assert rows(path) == [
        (2, {"email": "ana@example.org", "town": "", "country": ""}),
        (3, {"email": "bo@example.org", "town": "Lyon", "country": ""}),
    ]


# --- row numbers as the spreadsheet shows them ---


def test_blank_rows_are_skipped_but_counted(tmp_path: Path) -> None:
    content = (
        "email,name\r\n\r\nana@example.org,Ana\r\n   \r\n,\r\n , \t\r\nbo@example.org,Bo\r\n\r\n"
    )
    path = write(tmp_path, content)
    assert [row for row, _ in rows(path)] == [3, 7]


def test_quoted_newline_is_one_row(tmp_path: Path) -> None:
    content = 'email,note\nana@example.org,"line one\nline two\r\nline three"\n\nbo@example.org,x\n'
    assert rows(write(tmp_path, content)) == [
        (2, {"email": "ana@example.org", "note": "line one\nline two\r\nline three"}),
        (4, {"email": "bo@example.org", "note": "x"}),
    ]


def test_blank_lines_above_the_header_are_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "\n;;\nemail;name\nana@example.org;Ana\n")
    assert rows(path) == [(4, {"email": "ana@example.org", "name": "Ana"})]


def test_quoted_line_breaks_and_blank_rows_keep_the_row_numbers(tmp_path: Path) -> None:
    lines = [
        f'p{i}@example.org,"n\n{i}"' if i % 7 == 0 else f"p{i}@example.org,n{i}" for i in range(25)
    ]
    lines[4] = lines[11] = ","
    path = write(tmp_path, "email,name\n" + "\n".join(lines) + "\n")
    whole = rows(path)
    assert len(whole) == 23
    assert whole[-1][0] == 26
    assert whole[:2] == [(2, {"email": "p0@example.org", "name": "n\n0"}),
                         (3, {"email": "p1@example.org", "name": "n1"})]  # fmt: skip


def test_values_stay_text_past_the_first_ten_thousand_rows(tmp_path: Path) -> None:
    # The last rows hold only digits: a reader that guessed types would make 05678 into 5678.
    lines = "".join(f"p{i}@example.org,0{i % 10_000:04d}\n" for i in range(10_003))
    path = write(tmp_path, "email,postcode\n" + lines.replace("p10002@example.org,00002", "p10002@example.org,05678"))
    contacts = list(ContactList(path))
    assert [(c.row, c.values["postcode"]) for c in contacts[-3:]] == [
        (10_002, "00000"), (10_003, "00001"), (10_004, "05678"),
    ]  # fmt: skip


def test_a_list_can_be_read_twice(tmp_path: Path) -> None:
    contacts = ContactList(write(tmp_path, "email\nana@example.org\n"))
    assert list(contacts) == list(contacts) != []


# --- files and headers that cannot be read ---


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("email,name\nana@example.org,Ana\nbo@example.org,Bo,extra,more\n",
         "contacts.csv:3: row has 4 fields, the header has 2"),
        ("email,name\nana@example.org,Ana,\n",
         "contacts.csv:2: row has 3 fields, the header has 2"),
        ('email,name\n\n"a\nb",x\nbo@example.org,Bo,\n',
         "contacts.csv:4: row has 3 fields, the header has 2"),
        ('email,name\nana@example.org,"Ana\nbo@example.org,Bo\n',
         "contacts.csv:2: a quoted value is never closed"),
    ],
)  # fmt: skip
def test_rows_that_do_not_fit_the_header_are_refused_with_their_row(
    tmp_path: Path, content: str, expected: str
) -> None:
    assert error(write(tmp_path, content)).startswith(expected)


@pytest.mark.parametrize(
    ("last_line", "expected"),
    [("late@example.org,n,x", "contacts.csv:33: row has 3 fields"),
     ('late@example.org,"n', "contacts.csv:33: a quoted value is never closed")],
)  # fmt: skip
def test_bad_row_past_the_first_chunk_is_refused_with_its_row(
    tmp_path: Path, last_line: str, expected: str
) -> None:
    lines = [f'p{i}@example.org,"a\nb"' for i in range(30)] + ["", last_line]
    path = write(tmp_path, "email,name\n" + "\n".join(lines) + "\n")
    contacts = iter(ContactList(path))
    assert next(contacts).row == 2
    with pytest.raises(ContactsError) as caught:
        list(contacts)
    assert str(caught.value).startswith(expected)


def test_unnamed_columns_at_the_end_of_the_header_are_ignored_while_empty(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("email,name,,\r\nana@example.org,Ana,,\r\nbo@example.org,Bo, ,\r\n", encoding="utf-8")
    contacts = ContactList(path)
    assert contacts.columns == ["email", "name"]
    assert [c.values for c in contacts] == [
        {"email": "ana@example.org", "name": "Ana"}, {"email": "bo@example.org", "name": "Bo"}
    ]
    path.write_text("email,name,,\nana@example.org,Ana,,\nbo@example.org,Bo,,x\n", encoding="utf-8")
    with pytest.raises(ContactsError) as caught:
        list(ContactList(path))
    assert str(caught.value) == "contacts.csv:3: column 4 has a value but no name in the header"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("email,,name", "contacts.csv:1: column 2 of the header has no name"),
        ("email,name, email ",
         "contacts.csv:1: column 3 of the header repeats the name 'email' of column 1"),
    ],
)  # fmt: skip
def test_bad_header_is_refused(tmp_path: Path, header: str, expected: str) -> None:
    assert error(write(tmp_path, header + "\nana@example.org,Ana,x\n")) == expected


@pytest.mark.parametrize("content", ["", "\n\n", " , \n\t\n"])
def test_empty_file_is_refused(tmp_path: Path, content: str) -> None:
    assert error(write(tmp_path, content)).startswith("contacts.csv: the file is empty")


def test_header_only_is_an_empty_list(tmp_path: Path) -> None:
    contacts = ContactList(write(tmp_path, "email,name\n"))
    assert contacts.columns == ["email", "name"]
    assert list(contacts) == []


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert error(tmp_path / "contacts.csv").startswith("contacts.csv: file not found")


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").mkdir()
    assert error(tmp_path / "contacts.csv").startswith("contacts.csv: is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "email\n")
    path.chmod(0)
    assert error(path).startswith("contacts.csv: permission denied")


@pytest.mark.parametrize("name", ["contacts.xlsb", "contacts.numbers", "contacts"])
def test_unknown_extension_is_refused(tmp_path: Path, name: str) -> None:
    assert error(write(tmp_path, "email\n", name)).startswith(
        f"{name}: unknown kind of contact list"
    )


# --- Excel workbooks ---


def test_xlsx_values_read_as_the_sheet_shows_them(tmp_path: Path) -> None:
    path = workbook(tmp_path / "supporters.xlsx", {
        "A1": "email", "B1": " postcode ", "C1": "count", "D1": "share", "E1": "joined",
        "A2": "ana@example.org", "B2": "01234", "C2": 1234, "D2": 0.1 + 0.2,
        "E2": datetime.datetime(2024, 5, 1),
        "A4": "bo@example.org", "B4": "NA", "C4": 1234.0, "D4": 12.5,
        "E4": datetime.date(2024, 5, 2),
    })  # fmt: skip
    contacts = ContactList(path)
    assert contacts.columns == ["email", "postcode", "count", "share", "joined"]
    # openpyxl gives a datetime the format yyyy-mm-dd h:mm:ss, a date yyyy-mm-dd.
    assert [(contact.row, contact.values) for contact in contacts] == [
        (2, {"email": "ana@example.org", "postcode": "01234", "count": "1234", "share": "0.3",
             "joined": "2024-05-01 0:00:00"}),
        (4, {"email": "bo@example.org", "postcode": "NA", "count": "1234", "share": "12.5",
             "joined": "2024-05-02"}),
    ]  # fmt: skip


def test_xlsx_reads_the_first_sheet_where_its_table_starts(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active["C3"], book.active["D3"], book.active["D5"] = "email", "name", "Ana"
    book.create_sheet("Notes", 0)["A1"] = "not the list"
    book.move_sheet("Notes", 1)
    book.save(tmp_path / "list.xlsx")
    assert rows(tmp_path / "list.xlsx") == [(5, {"email": "", "name": "Ana"})]


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ({"A1": "email", "C1": "name"}, "list.xlsx:1: column B of the header has no name"),
        ({"A1": "email", "B1": "email"}, "list.xlsx:1: column B of the header repeats the name"),
        ({"A1": "email", "A2": "ana@example.org", "C2": "x"},
         "list.xlsx:2: column C has a value but no name in the header"),
        ({}, "list.xlsx: sheet 'Sheet' is empty"),
    ],
)  # fmt: skip
def test_bad_xlsx_table_is_refused(tmp_path: Path, cells: dict[str, object], expected: str) -> None:
    assert error(workbook(tmp_path / "list.xlsx", cells)).startswith(expected)


def test_file_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    message = error(write(tmp_path, "email\n", "list.xlsx"))
    assert message.startswith("list.xlsx: not a readable .xlsx workbook")


# --- duplicates ---


def contact(row: int, email: str, column: str = "email") -> Contact:
    return Contact(row, {column: email, "name": "x"}, "contacts.csv")


def test_duplicate_addresses_ignore_case_normalisation_and_spaces() -> None:
    finder = DuplicateFinder("email", "contacts.csv")
    nfc = unicodedata.normalize("NFC", "josé@example.org")
    nfd = unicodedata.normalize("NFD", "José@Example.org")
    assert nfc != nfd.lower()
    assert finder.check(contact(2, "Ana@Example.org")) is None
    assert finder.check(contact(3, nfc)) is None
    assert finder.check(contact(5, "ana@example.ORG")) == Problem(
        "contacts.csv", 5, "email", "duplicate of row 2 (same email)"
    )
    assert (
        str(finder.check(contact(6, nfd)))
        == "contacts.csv:6 (email): duplicate of row 3 (same email)"
    )
    assert finder.check(contact(7, "ana@example.net")) is None


def test_blank_ids_are_not_duplicates() -> None:
    finder = DuplicateFinder("email")
    assert [finder.check(contact(row, "")) for row in (2, 3, 4)] == [None, None, None]
    assert finder.check(Contact(5, {"name": "x"}, "contacts.csv")) is None


def test_ids_that_are_not_addresses_compare_exactly() -> None:
    finder = DuplicateFinder("member")
    assert finder.check(contact(2, "AB-12", "member")) is None
    assert finder.check(contact(3, "ab-12", "member")) is None
    assert finder.check(contact(4, "AB-12", "member")) == Problem(
        "contacts.csv", 4, "member", "duplicate of row 2 (same member)"
    )


def test_many_ids_keep_their_first_rows() -> None:
    finder = DuplicateFinder("email", "big.csv")
    assert all(finder.check(contact(i, f"p{i}@example.org")) is None for i in range(2, 20_002))
    problems = [
        finder.check(contact(20_002 + i, f"P{i}@example.org")) for i in range(2, 20_002, 997)
    ]
    assert [problem.message if problem else None for problem in problems] == [
        f"duplicate of row {i} (same email)" for i in range(2, 20_002, 997)
    ]


# --- the example list ---


def test_example_supporters_list_is_valid() -> None:
    contacts = list(ContactList(SUPPORTERS))
    assert ContactList(SUPPORTERS).columns == [
        "email", "first_name", "last_name", "town", "country", "language", "personal_note",
    ]  # fmt: skip
    assert 25 <= len(contacts) <= 40
    finder = DuplicateFinder("email", "supporters.csv")
    assert [finder.check(c) for c in contacts] == [None] * len(contacts)
    for supporter in contacts:
        domain = validate_email(supporter.get("email"), check_deliverability=False).domain
        assert domain in {"example.org", "example.com", "example.net"}
        assert (
            supporter.get("first_name") and supporter.get("last_name") and supporter.get("language")
        )
        assert not any(
            char in supporter.get("first_name") + supporter.get("last_name") for char in ',"<>'
        )
    assert "NA" in {supporter.get("last_name") for supporter in contacts}
    assert any('"' in supporter.get("personal_note") for supporter in contacts)


# --- any text survives the trip through a CSV file ---

cell_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(cell_text, cell_text, cell_text), max_size=8))
def test_any_text_round_trips_through_csv(
    tmp_path: Path, records: list[tuple[str, str, str]]
) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([("a", "b", "c"), *records])
    path = write(tmp_path, buffer.getvalue(), "roundtrip.csv")
    expected = [
        (row, dict(zip("abc", (cell.strip() for cell in record), strict=True)))
        for row, record in enumerate(records, start=2)
        if any(cell.strip() for cell in record)
    ]
    assert rows(path) == expected
