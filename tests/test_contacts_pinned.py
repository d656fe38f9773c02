"""Contact lists: behaviour that mutation testing found no test for (docs/mutation.md).

Each test is a fixed example against the real reader and real files: the place named in a
refusal, files longer than the one-megabyte blocks the encoding check reads, the delimiter
guessed from a sample, duplicates in a table with collisions, a sheet's table edges.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import openpyxl
import pytest
from odf.opendocument import OpenDocumentSpreadsheet

from mailaction.contacts import (
    _BLOCK_BYTES,
    Contact,
    ContactList,
    DuplicateFinder,
    _FirstRows,
    column_alias,
)
from mailaction.errors import ContactsError, Problem
from tests.test_sheets import two_lists

LINE = b"p00000@example.org,Ana Lima\n"
HEADER = b"email,name\n"


def write(folder: Path, content: bytes, name: str = "contacts.csv") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def error(path: Path, **options: object) -> str:
    """The ContactsError message from opening and reading ``path``."""
    with pytest.raises(ContactsError) as caught:
        list(ContactList(path, **options))  # type: ignore[arg-type]
    return str(caught.value)


def rows(path: Path, **options: object) -> list[tuple[int, dict[str, str]]]:
    return [(c.row, c.values) for c in ContactList(path, **options)]  # type: ignore[arg-type]


def past_one_block(first: bytes = HEADER) -> tuple[bytes, int]:
    """Lines of text a little longer than one block the encoding check reads, and where its
    first block ends (after the last line break in the first ``_BLOCK_BYTES``)."""
    lines = LINE * ((_BLOCK_BYTES - len(first)) // len(LINE) + 1)
    content = first + lines
    if content[:_BLOCK_BYTES].endswith(b"\n"):  # a block that happens to end with a line
        content = first + b"ana@example.org,A\n" + lines
    cut = content[:_BLOCK_BYTES].rfind(b"\n") + 1
    assert 0 < cut < _BLOCK_BYTES < len(content)  # the first block carries a partial line over
    return content, cut


def refusal(content: bytes, bad: bytes) -> str:
    """The message for the first ``bad`` byte of ``content``: its line and its offset."""
    offset = content.index(bad)
    line = content[:offset].count(b"\n") + 1
    return (
        f"contacts.csv: line {line}, byte {offset}: 0x{bad.hex().upper()} is neither UTF-8 nor "
        "Windows-1252 text; save the file as UTF-8 (CSV UTF-8 in Excel)"
    )


# --- bytes that are not text, past the first block ---


def test_bad_byte_at_the_start_of_the_second_block_is_placed(tmp_path: Path) -> None:
    content, cut = past_one_block()
    content = content[:cut] + b"\x81" + content[cut:]
    assert content.index(b"\x81") == cut
    assert error(write(tmp_path, content)) == refusal(content, b"\x81")


def test_bad_byte_deep_in_the_second_block_is_placed(tmp_path: Path) -> None:
    content, _ = past_one_block()
    content += b"bo@example.org,B\x81o\n" + LINE
    message = error(write(tmp_path, content))
    assert message == refusal(content, b"\x81")
    assert message.startswith("contacts.csv: line 37451, byte 1048599: 0x81")


def test_nul_at_the_start_of_the_second_block_is_refused(tmp_path: Path) -> None:
    content, cut = past_one_block()
    content = content[:cut] + b"\x00" + content[cut:]
    assert error(write(tmp_path, content)) == refusal(content, b"\x00")


def test_utf8_in_the_first_block_marks_a_bad_byte_in_the_second_as_not_cp1252(
    tmp_path: Path,
) -> None:
    # \xe9 alone would be é in Windows-1252; but the file already held UTF-8 (ë) a block earlier.
    content, _ = past_one_block(HEADER + "zoe@example.org,Zoë\n".encode())
    content += b"bo@example.org,B\xe9o\n"
    assert error(write(tmp_path, content)) == refusal(content, b"\xe9")


def test_bad_byte_in_a_last_line_without_line_break_is_placed(tmp_path: Path) -> None:
    content = b"email,name\nana@example.org,Ana\nbo@example.org,B\x81o"
    message = error(write(tmp_path, content))
    assert message == refusal(content, b"\x81")
    assert message.startswith("contacts.csv: line 3, byte 47: 0x81")


def test_file_whose_first_line_is_longer_than_a_block_is_checked_whole(tmp_path: Path) -> None:
    content = b"email,note\nana@example.org," + b"x" * _BLOCK_BYTES + b"\nbo@example.org,B\x81o\n"
    assert error(write(tmp_path, content)) == refusal(content, b"\x81")


def test_utf16_with_a_lone_surrogate_is_refused_in_one_line(tmp_path: Path) -> None:
    text = (
        "email,name\nana@example.org,A".encode("utf-16-le")
        + b"\x00\xd8"
        + "x\n".encode("utf-16-le")
    )
    path = write(tmp_path, b"\xff\xfe" + text)
    assert error(path) == "contacts.csv: not utf-16 text: illegal UTF-16 surrogate"


def test_a_nul_is_named_before_a_later_byte_that_is_not_utf8(tmp_path: Path) -> None:
    # The UTF-8 Zoë means the file is not Windows-1252; the NUL comes before the bad byte.
    content = "email,name\nzoe@example.org,Zoë\nbo@example.org,B".encode() + b"\x00o\nZo\xe9\n"
    assert error(write(tmp_path, content)) == refusal(content, b"\x00")


def test_a_byte_that_is_not_utf8_is_named_before_a_later_nul(tmp_path: Path) -> None:
    content = "email,name\nzoe@example.org,Zoë\nbo@example.org,B".encode() + b"\xe9o\nA\x00l\n"
    assert error(write(tmp_path, content)) == refusal(content, b"\xe9")


def test_the_first_of_two_nuls_is_named(tmp_path: Path) -> None:
    content = b"email,name\nbo@example.org,B\x00o\nal@example.org,A\x00l\n"
    assert error(write(tmp_path, content)) == refusal(content, b"\x00")


def test_a_nul_in_utf8_text_is_named_not_a_control_character_before_it(tmp_path: Path) -> None:
    # UTF-8 allows the escape character (0x1B); only the NUL makes this file binary.
    content = b"email,name\nbo@example.org,B\x1bo\nal@example.org,A\x00l\n"
    assert error(write(tmp_path, content)) == refusal(content, b"\x00")


def test_bad_byte_after_a_blank_first_line_is_placed(tmp_path: Path) -> None:
    content = b"\nemail,name\nbo@example.org,B\x81o\n"
    message = error(write(tmp_path, content))
    assert message.startswith("contacts.csv: line 3, byte 28: 0x81 is neither UTF-8 nor ")


def test_bad_byte_in_the_third_block_is_placed(tmp_path: Path) -> None:
    content, _ = past_one_block()
    content = content + content[len(HEADER) :] + b"bo@example.org,B\x81o\n"
    assert len(content) > 2 * _BLOCK_BYTES
    assert error(write(tmp_path, content)) == refusal(content, b"\x81")


def test_utf8_character_starting_the_second_block_is_not_cut_in_two(tmp_path: Path) -> None:
    content, cut = past_one_block()
    content = content[:cut] + "Élodie@example.org,Élodie\n".encode() + content[cut:]
    assert content.index("É".encode()) == cut and content.find(b"\n", cut) > _BLOCK_BYTES
    contacts = ContactList(write(tmp_path, content))
    row = content[:cut].count(b"\n") + 1
    assert [c.values for c in contacts if c.row == row] == [
        {"email": "Élodie@example.org", "name": "Élodie"}
    ]


def test_cp1252_byte_past_the_first_block_of_ascii_is_windows_1252(tmp_path: Path) -> None:
    content, _ = past_one_block()
    path = write(tmp_path, content + b"zoe@example.org,Zo\xeb\n")
    *_, last = ContactList(path)
    assert last.values == {"email": "zoe@example.org", "name": "Zoë"}


# --- the sample of the first 64 KiB: line ends, blank lines, lines longer than the sample ---


def described(
    path: Path, **options: object
) -> tuple[str, list[str], list[tuple[int, dict[str, str]]]]:
    contacts = ContactList(path, **options)  # type: ignore[arg-type]
    return contacts.description, contacts.columns, [(c.row, c.values) for c in contacts]


ANA = {"email": "ana@example.org", "name": "Ana"}


def test_byte_order_mark_on_a_blank_first_line_is_not_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf\nemail,name\nana@example.org,Ana\n")
    assert described(path) == ("contacts.csv, header on row 2", ["email", "name"], [(3, ANA)])


def test_windows_line_ends_count_one_row_each_when_the_header_is_looked_for(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, b"Supporters\r\n\r\nemail,name\r\nana@example.org,Ana\r\n")
    assert described(path, id_column="email") == (
        "contacts.csv, header on row 3", ["email", "name"], [(4, ANA)]
    )  # fmt: skip


def test_old_mac_line_ends_with_title_and_blank_lines_above_the_header(tmp_path: Path) -> None:
    # Excel's "CSV (Macintosh)" ends lines with a carriage return alone; a reader that looks for
    # line feeds skips one line too many and reads the first contact as the header.
    content = b'Supporters;;\r\r;;\remail;name\rana@example.org;"Ana\rLima"\r\rbo@example.org;Bo\r'
    path = write(tmp_path, content)
    expected = [(5, {"email": "ana@example.org", "name": "Ana\rLima"}),
                (7, {"email": "bo@example.org", "name": "Bo"})]  # fmt: skip
    assert described(path, id_column="email") == (
        "contacts.csv, header on row 4", ["email", "name"], expected
    )  # fmt: skip
    path = write(tmp_path, b"\r\remail,name\rana@example.org,Ana\r")
    assert described(path) == ("contacts.csv, header on row 3", ["email", "name"], [(4, ANA)])


def test_old_mac_line_ends_in_utf16(tmp_path: Path) -> None:
    # Ċ (U+010A) is the bytes 0A 01 in UTF-16: a line feed byte that is no line feed.
    text = "\remail\tname\rcensu@example.org\tĊensu\r"
    path = write(tmp_path, b"\xff\xfe" + text.encode("utf-16-le"))
    assert described(path) == (
        "contacts.csv, header on row 2", ["email", "name"],
        [(3, {"email": "censu@example.org", "name": "Ċensu"})],
    )  # fmt: skip


def test_old_mac_line_ends_when_the_header_is_looked_for_on_the_first_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, b"email,name\rana@example.org,Ana\r")
    assert described(path, id_column="email") == (
        "contacts.csv, header on row 1", ["email", "name"], [(2, ANA)]
    )  # fmt: skip


def test_header_without_a_line_break_after_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, b"\n\nemail,name")
    assert described(path) == ("contacts.csv, header on row 3", ["email", "name"], [])


WIDE_HEADER = b"email," + b",".join(b"c%04d " % i + b"x" * 50 for i in range(1_300))  # 73 KB


def test_header_longer_than_the_sample_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, WIDE_HEADER + b"\nana@example.org\n")
    contacts = ContactList(path)
    assert contacts.description == "contacts.csv, header on row 1"
    assert len(contacts.columns) == 1_301
    path = write(tmp_path, b"\n,\n" + WIDE_HEADER + b"\nana@example.org\n")
    contacts = ContactList(path)
    assert contacts.description == "contacts.csv, header on row 3"
    assert contacts.columns[-1] == "c1299 " + "x" * 50


def test_header_above_a_row_longer_than_the_sample_is_read(tmp_path: Path) -> None:
    note = "x" * 70_000
    path = write(tmp_path, f"\nemail,note\nana@example.org,{note}\n".encode())
    expected = [(3, {"email": "ana@example.org", "note": note})]
    assert described(path) == ("contacts.csv, header on row 2", ["email", "note"], expected)


def test_file_of_exactly_the_sample_size_is_read_to_its_last_line(tmp_path: Path) -> None:
    content = b"\n" * (64 * 1024 - len(b"email,name")) + b"email,name"
    assert len(content) == 65_536
    assert described(write(tmp_path, content)) == (
        "contacts.csv, header on row 65527", ["email", "name"], []
    )  # fmt: skip


# --- the delimiter and the header line ---


def test_delimiter_next_to_quotes_wins_over_a_comma_in_the_header(tmp_path: Path) -> None:
    path = write(
        tmp_path, b'name, title;email\n"Lima, Ana";ana@example.org\n"Silva, Bo";bo@example.org\n'
    )
    contacts = ContactList(path)
    assert contacts.columns == ["name, title", "email"]
    assert [c.values["name, title"] for c in contacts] == ["Lima, Ana", "Silva, Bo"]


def test_title_line_of_a_tsv_is_not_split_on_commas(tmp_path: Path) -> None:
    path = write(
        tmp_path, b"Contact us by phone, email\n\nname\temail\nAna\tana@example.org\n", "list.tsv"
    )
    assert described(path, id_column="email") == (
        "list.tsv, header on row 3", ["name", "email"],
        [(4, {"name": "Ana", "email": "ana@example.org"})],
    )  # fmt: skip


def test_quoted_title_after_a_space_is_one_field_when_the_header_is_looked_for(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, b'Note:, "call first, email"\nname, email\nAna, ana@example.org\n')
    assert ContactList(path, id_column="email").description == "contacts.csv, header on row 2"


def test_header_without_the_id_column_is_the_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name\nana@example.org,Ana\n")
    assert described(path, id_column="member") == (
        "contacts.csv, header on row 1", ["email", "name"], [(2, ANA)]
    )  # fmt: skip


def test_a_column_named_x(tmp_path: Path) -> None:
    path = write(tmp_path, b"X\n1\n2\n")
    assert described(path) == (
        "contacts.csv, header on row 1",
        ["X"],
        [(2, {"X": "1"}), (3, {"X": "2"})],
    )


@pytest.mark.parametrize("content", [b"email,name\n\n", b"Supporters,,\n\nemail,name\n"])
def test_empty_chosen_header_row_is_refused_naming_the_setting(
    tmp_path: Path, content: bytes
) -> None:
    assert error(write(tmp_path, content), header_row=2) == (
        "contacts.csv: row 2 is empty; campaign.contacts_header_row must name the row that holds "
        "the column names"
    )


def test_the_header_is_read_alone_when_the_list_is_opened(tmp_path: Path) -> None:
    contacts = ContactList(write(tmp_path, b"email,name\nana@example.org,Ana,x\n"))
    assert contacts.columns == ["email", "name"]
    with pytest.raises(ContactsError, match="^contacts.csv:2: row has 3 fields, the header has 2$"):
        list(contacts)


def test_sheet_chosen_for_a_text_file_is_refused(tmp_path: Path) -> None:
    assert error(write(tmp_path, b"email\n"), sheet=1) == (
        "contacts.csv: a text file has no sheets; campaign.contacts_sheet is for workbooks "
        "(.xlsx, .ods, .xls)"
    )


@pytest.mark.parametrize(
    ("name", "kind"), [("contacts", "'(no extension)'"), ("list.XLSB", "'.xlsb'")]
)
def test_unknown_kind_of_file_is_refused_listing_the_kinds(
    tmp_path: Path, name: str, kind: str
) -> None:
    assert error(write(tmp_path, b"email\n", name)) == (
        f"{name}: unknown kind of contact list {kind}; use .csv, .tsv, .txt, .xlsx, .ods or .xls"
    )


# --- rows that do not fit: the row the parser stopped at ---


def test_long_row_of_a_windows_1252_file_with_semicolons_is_placed(tmp_path: Path) -> None:
    path = write(tmp_path, b"email;name\nzoe@example.org;Zo\xeb\nbo@example.org;Bo;x\n")
    assert error(path) == "contacts.csv:3: row has 3 fields, the header has 2"


def test_fields_are_counted_with_quotes_after_spaces(tmp_path: Path) -> None:
    content = b'email, name\nbo@example.org, "Silva, Bo"\nana@example.org, Ana, x\n'
    assert error(write(tmp_path, content)) == "contacts.csv:3: row has 3 fields, the header has 2"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('email,name\nana@example.org,"Ana" Lima\n', "Ana Lima"),
        ('email,name\nana@example.org, "Ana"\t \n', "Ana"),
        ('email,name\nana@example.org,"A ""B"" C"\n', 'A "B" C'),
        ('email,name\nana@example.org,An"a\n', 'An"a'),
    ],
)  # fmt: skip
def test_quotes_are_read_as_spreadsheets_read_them(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = write(tmp_path, content.encode())
    assert [contact.values["name"] for contact in ContactList(path)] == [expected]


def test_a_row_read_again_leniently_goes_on_past_its_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, b'email,name,note\nana@example.org,"Ana" Lima,"two\nlines"\nbo@example.org,Bo,\n')
    assert [(c.row, c.values) for c in ContactList(path)] == [
        (2, {"email": "ana@example.org", "name": "Ana Lima", "note": "two\nlines"}),
        (3, {"email": "bo@example.org", "name": "Bo", "note": ""}),
    ]


@pytest.mark.parametrize(
    "content",
    [
        'email,name\nana@example.org,"Ana" Lima,"x\nbo@example.org,Bo\n',
        'email,name\nana@example.org,Ana\nbo@example.org,"Bo" x,"y\n',
    ],
)
def test_a_quote_never_closed_after_text_past_a_closing_quote_is_refused(
    tmp_path: Path, content: str
) -> None:
    row = 2 if "Lima" in content else 3
    assert error(write(tmp_path, content.encode())) == (
        f'contacts.csv:{row}: a quoted value is never closed (stray ")'
    )


def test_the_first_problem_in_row_order_is_the_one_reported(tmp_path: Path) -> None:
    content = b'email,name,\nana@example.org,Ana,x\nbo@example.org,"Bo\n'
    assert error(write(tmp_path, content)) == (
        "contacts.csv:2: column 3 has a value but no name in the header"
    )


def test_a_value_over_128_kib_is_read_whole_and_a_long_row_after_it_placed(
    tmp_path: Path,
) -> None:
    # The csv module's own limit on a value is 128 KiB.
    note = "x" * 200_000
    path = write(tmp_path, f"email,note\nana@example.org,{note}\n".encode())
    assert [contact.values["note"] for contact in ContactList(path)] == [note]
    path = write(tmp_path, f"email,note\nana@example.org,{note}\nbo@example.org,B,x\n".encode())
    assert error(path) == "contacts.csv:3: row has 3 fields, the header has 2"


def test_list_removed_after_it_was_opened_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, b"email\nana@example.org\n")
    contacts = ContactList(path)
    path.unlink()
    with pytest.raises(ContactsError) as caught:
        list(contacts)
    assert str(caught.value) == f"contacts.csv: file not found ({path})"


# --- duplicates ---


def test_the_finders_source_names_the_problem() -> None:
    finder = DuplicateFinder("email", "big.csv")
    assert finder.check(Contact(2, {"email": "ana@example.org"}, "part-1.csv")) is None
    assert finder.check(Contact(9, {"email": "ana@example.org"}, "part-2.csv")) == Problem(
        "big.csv", 9, "email", "duplicate of row 2 (same email)"
    )


def test_ids_holding_a_lone_surrogate_are_compared() -> None:
    # A Python caller's text may hold one (a file name decoded with surrogateescape).
    finder = DuplicateFinder("member")
    assert finder.check(Contact(2, {"member": "AB-\udc80"}, "list.csv")) is None
    assert finder.check(Contact(3, {"member": "AB-\udc81"}, "list.csv")) is None
    problem = finder.check(Contact(4, {"member": "AB-\udc80"}, "list.csv"))
    assert problem is not None and problem.message == "duplicate of row 2 (same member)"


def test_first_rows_in_a_table_full_of_collisions() -> None:
    table = _FirstRows(capacity=4)  # slots 0-3: a key's slot is its last two bits
    # 4 and 8 both want slot 0: 8 takes slot 1; 12 too: it takes slot 2, and the table grows.
    assert [table.setdefault(key, row) for key, row in [(4, 2), (8, 3)]] == [2, 3]
    assert (len(table._keys), len(table._rows)) == (4, 4)  # half full: not grown yet
    assert table.setdefault(12, 4) == 4
    assert (len(table._keys), len(table._rows)) == (8, 8)
    assert [table.setdefault(key, 99) for key in (4, 8, 12)] == [2, 3, 4]
    table = _FirstRows(capacity=4)
    # 3, 7 and 11 all want the last slot: 7 wraps round to slot 0, 11 to slot 1.
    assert [table.setdefault(key, row) for key, row in [(3, 2), (7, 3), (11, 4)]] == [2, 3, 4]
    assert [table.setdefault(key, 99) for key in (3, 7, 11)] == [2, 3, 4]


def test_first_rows_keep_their_rows_through_growing() -> None:
    table = _FirstRows(capacity=8)
    keys = [1 << 40 | n << 3 for n in range(1, 65)]  # all in slot 0 of a table of 8
    assert [table.setdefault(key, row) for row, key in enumerate(keys, start=2)] == list(
        range(2, 66)
    )
    assert len(table._keys) == len(table._rows) == 128  # 64 keys: half full, not grown further
    assert [table.setdefault(key, 0) for key in keys] == list(range(2, 66))
    # Keys use all 64 bits, rows all 32: a row number above 2**31 is kept as it is.
    assert table.setdefault(1 << 63, 4_000_000_000) == 4_000_000_000
    assert _FirstRows().setdefault((1 << 64) - 1, 4_000_000_000) == 4_000_000_000


def test_column_alias_is_snake_case() -> None:
    assert column_alias("(E-mail)") == "e_mail"
    assert column_alias("FAX") == "fax"
    assert column_alias(" First  Name ") == "first_name"


# --- workbooks: the sheet, the table's edges ---


def test_sheet_number_one_is_the_first_sheet(tmp_path: Path) -> None:
    contacts = ContactList(two_lists(tmp_path / "lists.xlsx"), sheet=1)
    assert contacts.description == "lists.xlsx, sheet 'Members', header on row 1"


def test_a_chosen_header_row_is_looked_for_on_the_first_sheet_only(tmp_path: Path) -> None:
    path = two_lists(tmp_path / "lists.xlsx")
    assert error(path, header_row=3, id_column="email") == (
        "lists.xlsx: row 3 of sheet 'Members' is empty; campaign.contacts_header_row must name "
        "the row that holds the column names (sheets: 'Members', 'Donors')"
    )


def test_workbook_without_a_sheet_is_refused(tmp_path: Path) -> None:
    OpenDocumentSpreadsheet().save(str(tmp_path / "list.ods"))
    assert error(tmp_path / "list.ods") == "list.ods: the workbook has no sheet"


def test_formula_without_a_value_right_of_the_table_is_not_read(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["email", "name"])
    book.active.append(["ana@example.org", "Ana", "=1+1"])  # saved without its value
    book.save(tmp_path / "list.xlsx")
    assert [c.values for c in ContactList(tmp_path / "list.xlsx")] == [ANA]


def test_formula_without_a_value_in_the_first_column_of_a_table_in_column_b(
    tmp_path: Path,
) -> None:
    book = openpyxl.Workbook()
    book.active["B1"], book.active["C1"] = "email", "name"
    book.active["B2"], book.active["C2"] = '=LOWER("ANA@EXAMPLE.ORG")', "Ana"
    book.save(tmp_path / "list.xlsx")
    assert error(tmp_path / "list.xlsx").startswith(
        "list.xlsx:2: B2 (email): a formula without a saved value"
    )


def test_the_delimiter_is_guessed_from_the_first_50_lines_only(tmp_path: Path) -> None:
    # Line 51 holds a quoted value between commas, which csv.Sniffer would take for the
    # delimiter; the 50 lines above it use ";" (the header holds both).
    lines = ["email;name, title", *(f"p{n}@example.org;Name {n}" for n in range(49))]
    path = write(tmp_path, "\n".join([*lines, 'q@example.org,"Quinn",', ""]).encode())
    contacts = ContactList(path)
    assert contacts.columns == ["email", "name, title"]
    assert rows(path)[0] == (2, {"email": "p0@example.org", "name, title": "Name 0"})


def test_opening_a_list_holds_a_block_of_it_not_the_whole_file(tmp_path: Path) -> None:
    # The encoding is checked block by block (1 MiB), the header read from the first 64 KiB:
    # an 8 MiB list is opened in about 4 MiB. Reading the file whole, for the check or for
    # any of its first bytes, takes twice that or more.
    row = "p{n}@example.org,Zoë " + "x" * 10_000 + "\n"
    path = tmp_path / "contacts.csv"
    path.write_text("email,note\n" + "".join(row.format(n=n) for n in range(800)), "utf-8")
    assert path.stat().st_size > 7 * 2**20
    tracemalloc.start()
    try:
        ContactList(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20, f"{peak / 2**20:.1f} MiB"


def test_a_first_row_longer_than_the_sample_helps_guess_the_delimiter(tmp_path: Path) -> None:
    # The header alone holds a semicolon and a comma; the first row, cut off by the end of the
    # 64 KiB sample, is all there is to tell them apart.
    note = "x" * 70_000
    path = write(tmp_path, f"email;name, title\nana@example.org;Ana {note}\n".encode())
    contacts = ContactList(path)
    assert contacts.columns == ["email", "name, title"]
    assert [c.values["email"] for c in contacts] == ["ana@example.org"]


def test_title_lines_above_the_header_of_a_list_longer_than_the_sample(tmp_path: Path) -> None:
    rows = "".join(f"p{n}@example.org;Supporter {n}\n" for n in range(5_000))
    path = write(tmp_path, ("Campaign list;\n;\nemail;name\n" + rows).encode())
    assert path.stat().st_size > 2 * 64 * 1024
    contacts = ContactList(path, id_column="email")
    assert contacts.description == "contacts.csv, header on row 3"
    assert [(c.row, c.values["name"]) for c in contacts][-1] == (5_003, "Supporter 4999")
