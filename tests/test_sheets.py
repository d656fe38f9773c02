"""Workbooks as organisers make them: sheets, title rows, displayed values, .ods and .xls."""

from __future__ import annotations

import datetime
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableCell, TableRow
from odf.text import P

from mailaction.campaign import Campaign
from mailaction.cli import main
from mailaction.config import load_config
from mailaction.contacts import ContactList
from mailaction.errors import ContactsError

DATA = Path(__file__).resolve().parent / "data"
TEMPLATE = """\
To: {{ name }} <{{ email }}>
From: Campaign Team <campaign@example.org>
Subject: A letter from {{ postcode }}

Dear Minister,

{{ greeting }}, I live at {{ postcode }}; {{ share }} of us joined on {{ joined }}.
"""
# What a person sees in the sheet, and so what each letter must say.
SEEN = {
    "email": "ana@example.org", "name": "Ana", "postcode": "02134", "share": "25 %",
    "joined": "05/03/2024", "greeting": "Dear Ana",
}  # fmt: skip
HEADER = list(SEEN)


def organiser_xlsx(path: Path) -> Path:
    """A "Notes" sheet first; then a merged title row, a blank row, the header on row 3, and a
    postcode in the Zip Code format, a percentage, a dd/mm/yyyy date and a formula."""
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active["A1"] = "Send the letters before Friday."
    sheet = book.create_sheet("Supporters")
    sheet["A1"] = "Supporters of the campaign, March 2024"
    sheet.merge_cells("A1:F1")
    sheet.append([])
    sheet.append(HEADER)
    sheet.append(["ana@example.org", "Ana", 2134, 0.25, datetime.date(2024, 3, 5), '="Dear "&B4'])
    sheet["C4"].number_format = "00000"
    sheet["D4"].number_format = "0 %"
    sheet["E4"].number_format = "dd/mm/yyyy"
    book.save(path)
    return with_saved_values(path, "xl/worksheets/sheet2.xml", {"F4": "Dear Ana"})


def with_saved_values(path: Path, part: str, values: dict[str, str]) -> Path:
    """``path`` with the formula results a spreadsheet program would have saved (openpyxl
    writes formulas without them)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    xml = members[part].decode()
    for cell, value in values.items():
        xml, count = re.subn(
            rf'<c r="{cell}"([^>]*)><f>(.*?)</f><v\s*/>',
            rf'<c r="{cell}"\1 t="str"><f>\2</f><v>{value}</v>',
            xml,
        )
        assert count == 1, cell
    members[part] = xml.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def ods_cell(text: str = "", **attributes: str) -> TableCell:
    cell = TableCell(**attributes)
    if text:
        cell.addElement(P(text=text))
    return cell


def ods_row(*cells: TableCell) -> TableRow:
    row = TableRow()
    for cell in cells:
        row.addElement(cell)
    return row


def organiser_ods(path: Path) -> Path:
    """The same workbook as LibreOffice saves it: each cell's value and its displayed text."""
    document = OpenDocumentSpreadsheet()
    notes = Table(name="Notes")
    notes.addElement(ods_row(ods_cell("Send the letters before Friday.", valuetype="string")))
    document.spreadsheet.addElement(notes)
    sheet = Table(name="Supporters")
    sheet.addElement(ods_row(ods_cell("Supporters of the campaign, March 2024", valuetype="string",
                                      numbercolumnsspanned="6")))  # fmt: skip
    sheet.addElement(TableRow())
    sheet.addElement(ods_row(*(ods_cell(name, valuetype="string") for name in HEADER)))
    sheet.addElement(ods_row(
        ods_cell("ana@example.org", valuetype="string"), ods_cell("Ana", valuetype="string"),
        ods_cell("02134", valuetype="float", value="2134"),
        ods_cell("25 %", valuetype="percentage", value="0.25"),
        ods_cell("05/03/2024", valuetype="date", datevalue="2024-03-05"),
        ods_cell("Dear Ana", valuetype="string", formula='of:="Dear "&[.B4]'),
        ods_cell(numbercolumnsrepeated="1000"),
    ))  # fmt: skip
    sheet.addElement(TableRow(numberrowsrepeated="1048570"))
    document.spreadsheet.addElement(sheet)
    document.save(str(path))
    return path


def campaign_folder(folder: Path, contacts: Path, campaign: str = "") -> Path:
    (folder / "letter.txt").write_text(TEMPLATE, encoding="utf-8")
    config = folder / "mailaction.toml"
    config.write_text(
        f'[campaign]\nname = "sheets"\ntemplate = "letter.txt"\ncontacts = "{contacts.name}"\n'
        f"{campaign}",
        encoding="utf-8",
    )
    return config


def error(path: Path, **options: object) -> str:
    with pytest.raises(ContactsError) as caught:
        list(ContactList(path, **options))  # type: ignore[arg-type]
    return str(caught.value)


# --- the organiser's workbook, as .xlsx, .ods and .xls ---


@pytest.mark.parametrize("make", [organiser_xlsx, organiser_ods], ids=["xlsx", "ods"])
def test_values_reach_the_letter_as_the_sheet_shows_them(tmp_path: Path, make: object) -> None:
    suffix = ".xlsx" if make is organiser_xlsx else ".ods"
    contacts = make(tmp_path / f"contacts{suffix}")  # type: ignore[operator]
    campaign = Campaign(load_config(campaign_folder(tmp_path, contacts)))
    assert campaign.contacts.description == f"contacts{suffix}, sheet 'Supporters', header on row 3"
    assert [(contact.row, contact.values) for contact in campaign.contacts] == [(4, SEEN)]
    letter = next(campaign.letters()).data.decode()
    assert "Subject: A letter from 02134" in letter
    assert "Dear Ana, I live at 02134; 25 % of us joined on 05/03/2024." in letter


def test_xls_workbook_is_read_as_displayed() -> None:
    contacts = ContactList(DATA / "supporters.xls", id_column="email")
    assert contacts.description == "supporters.xls, sheet 'Supporters', header on row 3"
    assert [(contact.row, contact.values) for contact in contacts] == [
        (4, {"email": "ana@example.org", "name": "Ana", "postcode": "02134", "share": "25 %",
             "joined": "05/03/2024", "amount": "1,234.50"}),
    ]  # fmt: skip


def test_validate_says_which_sheet_and_row_it_read_first(tmp_path: Path) -> None:
    config = campaign_folder(tmp_path, organiser_xlsx(tmp_path / "contacts.xlsx"))
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "contacts.xlsx, sheet 'Supporters', header on row 3"


# --- choosing the sheet and the header row ---


def two_lists(path: Path) -> Path:
    """Sheet "Members" (header on row 1) and sheet "Donors" (header on row 2 under a title)."""
    book = openpyxl.Workbook()
    book.active.title = "Members"
    book.active.append(["email", "name"])
    book.active.append(["ana@example.org", "Ana"])
    donors = book.create_sheet("Donors")
    donors.append(["Donors 2024"])
    donors.append(["Email", "name"])
    donors.append(["bo@example.org", "Bo"])
    book.save(path)
    return path


@pytest.mark.parametrize(
    ("options", "description", "first"),
    [
        ({"id_column": "email"}, "sheet 'Members', header on row 1", (2, "ana@example.org")),
        ({"sheet": "Donors", "id_column": "email"}, "sheet 'Donors', header on row 2", (3, "bo@example.org")),
        ({"sheet": "donors", "id_column": "email"}, "sheet 'Donors', header on row 2", (3, "bo@example.org")),
        ({"sheet": 2, "header_row": 2}, "sheet 'Donors', header on row 2", (3, "bo@example.org")),
        ({"sheet": 2}, "sheet 'Donors', header on row 1", None),
    ],
)  # fmt: skip
def test_sheet_and_header_row_can_be_chosen(
    tmp_path: Path, options: dict[str, object], description: str, first: tuple[int, str] | None
) -> None:
    contacts = ContactList(two_lists(tmp_path / "lists.xlsx"), **options)  # type: ignore[arg-type]
    assert contacts.description == f"lists.xlsx, {description}"
    if first is not None:
        contact = next(iter(contacts))
        assert (contact.row, contact.values[contacts.columns[0]]) == first


def test_config_keys_choose_the_sheet_and_header_row(tmp_path: Path) -> None:
    two_lists(tmp_path / "lists.xlsx")
    config = campaign_folder(
        tmp_path, tmp_path / "lists.xlsx", 'contacts_sheet = "Donors"\ncontacts_header_row = 2\n'
    )
    campaign = Campaign(load_config(config))
    assert campaign.contacts.description == "lists.xlsx, sheet 'Donors', header on row 2"
    assert campaign.id_column == "Email"


def test_a_sheet_without_the_id_column_is_passed_over_for_the_next(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["notes"])
    book.active.append(["call Ana on Monday"])
    sheet = book.create_sheet("List")
    sheet["B5"], sheet["C5"], sheet["B6"] = "name", "E-mail", "Ana"
    book.save(tmp_path / "list.xlsx")
    contacts = ContactList(tmp_path / "list.xlsx", id_column="e_mail")
    assert contacts.description == "list.xlsx, sheet 'List', header on row 5"
    assert contacts.columns == ["name", "E-mail"]


def test_no_sheet_with_the_id_column_lists_the_sheets(tmp_path: Path) -> None:
    message = error(two_lists(tmp_path / "lists.xlsx"), id_column="address")
    assert message == (
        "lists.xlsx: no header row with a column 'address' in the first 20 rows of any sheet "
        "(sheets: 'Members', 'Donors'); set campaign.id_column to the column that identifies "
        "contacts, or campaign.contacts_sheet and campaign.contacts_header_row"
    )


def test_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    message = error(two_lists(tmp_path / "lists.xlsx"), sheet="Volunteers")
    assert message == "lists.xlsx: no sheet 'Volunteers' (sheets: 1 'Members', 2 'Donors')"
    assert "(sheets: 1 'Members', 2 'Donors')" in error(tmp_path / "lists.xlsx", sheet=3)


def test_empty_header_row_is_refused(tmp_path: Path) -> None:
    message = error(two_lists(tmp_path / "lists.xlsx"), sheet="Members", header_row=7)
    assert message.startswith(
        "lists.xlsx: row 7 of sheet 'Members' is empty; campaign.contacts_header_row"
    )


def test_csv_title_lines_above_the_header_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "Supporters, March 2024;;\n;;\nname;E-mail\nAna;ana@example.org\n", encoding="utf-8"
    )
    contacts = ContactList(path, id_column="e_mail")
    assert contacts.description == "list.csv, header on row 3"
    assert [(c.row, c.values) for c in contacts] == [
        (4, {"name": "Ana", "E-mail": "ana@example.org"})
    ]


def test_csv_header_row_can_be_chosen(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("Supporters,,\n\nemail,name\nana@example.org,Ana\n", encoding="utf-8")
    contacts = ContactList(path, header_row=3)
    assert contacts.description == "list.csv, header on row 3"
    assert [(c.row, c.values) for c in contacts] == [
        (4, {"email": "ana@example.org", "name": "Ana"})
    ]
    assert "row 2 is empty" in error(path, header_row=2)
    assert error(path, sheet="Supporters").startswith("list.csv: a text file has no sheets")


# --- formulas ---


def test_formula_without_a_saved_value_is_refused_naming_its_cells(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["email", "name", "greeting", "town"])
    book.active.append(["ana@example.org", "Ana", '="Dear "&B2', '=UPPER("Lyon")'])
    book.save(tmp_path / "list.xlsx")
    assert error(tmp_path / "list.xlsx") == (
        "list.xlsx:2: C2 (greeting), D2 (town): a formula without a saved value (the file was "
        "written by a program that does not calculate); open it in a spreadsheet program and save it"
    )


def test_formula_without_a_saved_value_in_ods_is_refused(tmp_path: Path) -> None:
    document = OpenDocumentSpreadsheet()
    sheet = Table(name="List")
    sheet.addElement(
        ods_row(ods_cell("email", valuetype="string"), ods_cell("n", valuetype="string"))
    )
    sheet.addElement(
        ods_row(ods_cell("ana@example.org", valuetype="string"), ods_cell(formula="of:=1+1"))
    )
    document.spreadsheet.addElement(sheet)
    document.save(str(tmp_path / "list.ods"))
    assert error(tmp_path / "list.ods").startswith(
        "list.ods:2: B2 (n): a formula without a saved value"
    )


def test_formula_result_is_read_never_the_formula(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["email", "total", "label"])
    book.active.append(["ana@example.org", "=2+3", '=IF(B2>9,"big","")'])
    book.save(tmp_path / "list.xlsx")
    with_saved_values(tmp_path / "list.xlsx", "xl/worksheets/sheet1.xml", {"B2": "5", "C2": ""})
    assert [c.values for c in ContactList(tmp_path / "list.xlsx")] == [
        {"email": "ana@example.org", "total": "5", "label": ""}
    ]


def test_cli_refuses_a_formula_without_value_in_one_line(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(HEADER)
    book.active.append(["ana@example.org", "Ana", "02134", "25 %", "05/03/2024", '="Dear "&B2'])
    book.save(tmp_path / "contacts.xlsx")
    config = campaign_folder(tmp_path, tmp_path / "contacts.xlsx")
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert "contacts.xlsx:2: F2 (greeting): a formula without a saved value" in result.output
    assert "Traceback" not in result.output


# --- cells outside the table ---


def test_value_right_of_the_header_is_refused(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["Supporters"])
    book.active.append(["email", "name"])
    book.active.append(["ana@example.org", "Ana", "stray"])
    book.save(tmp_path / "list.xlsx")
    message = error(tmp_path / "list.xlsx", id_column="email")
    assert message == "list.xlsx:3: column C has a value but no name in the header"


def test_password_protected_workbook_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.xlsx").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(508))
    assert error(tmp_path / "list.xlsx").startswith("list.xlsx: a password-protected workbook")


def test_ods_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.ods").write_text("email\n", encoding="utf-8")
    assert (
        error(tmp_path / "list.ods") == "list.ods: not a readable .ods workbook: not a zip archive"
    )


def test_xls_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.xls").write_text("email\n", encoding="utf-8")
    assert error(tmp_path / "list.xls").startswith("list.xls: not a readable .xls workbook")


def test_xlsx_saved_under_an_xls_name_is_read(tmp_path: Path) -> None:
    path = two_lists(tmp_path / "lists.xlsx").rename(tmp_path / "lists.xls")
    assert [c.values for c in ContactList(path)] == [{"email": "ana@example.org", "name": "Ana"}]


def test_damaged_sheet_part_is_refused_in_one_line(tmp_path: Path) -> None:
    path = two_lists(tmp_path / "lists.xlsx")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["xl/worksheets/sheet1.xml"] = members["xl/worksheets/sheet1.xml"][:200]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert error(path).startswith(
        "lists.xlsx: not a readable .xlsx workbook: xl/worksheets/sheet1.xml: "
    )


MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def excel_style_xlsx(path: Path, main: str = MAIN, relationships: str = RELATIONSHIPS) -> Path:
    """A workbook laid out as Excel writes one: shared strings (one in rich-text runs, one with a
    phonetic guide), custom number formats in styles.xml, the 1904 date system."""
    kinds = f"{relationships}/"
    parts = {
        "_rels/.rels": f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{kinds}officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{main}" xmlns:r="{relationships}"><workbookPr date1904="1"/>'
        '<sheets><sheet name="Supporters" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{kinds}worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{kinds}sharedStrings" Target="/xl/sharedStrings.xml"/>'
        f'<Relationship Id="rId3" Type="{kinds}styles" Target="styles.xml"/></Relationships>',
        "xl/sharedStrings.xml": f'<sst xmlns="{main}"><si><t>email</t></si><si><t>name</t></si>'
        "<si><t>postcode</t></si><si><t>joined</t></si><si><t>ana@example.org</t></si>"
        '<si><r><rPr><b/></rPr><t>An</t></r><r><t xml:space="preserve">a Lima</t></r></si>'
        '<si><t>Tokyo</t><rPh sb="0" eb="2"><t>トウキョウ</t></rPh></si></sst>',
        "xl/styles.xml": f'<styleSheet xmlns="{main}"><numFmts count="1">'
        '<numFmt numFmtId="164" formatCode="00000"/></numFmts><cellXfs count="3">'
        '<xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="15"/></cellXfs></styleSheet>',
        "xl/worksheets/sheet1.xml": f'<worksheet xmlns="{main}"><sheetData>'
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c>'
        '<c r="D1" t="s"><v>3</v></c><c r="E1" t="s"><v>6</v></c></row>'
        '<row r="2"><c r="A2" t="s"><v>4</v></c><c r="B2" t="s"><v>5</v></c>'
        '<c r="C2" s="1"><v>2134</v></c><c r="D2" s="2"><v>0</v></c><c r="E2" t="b"><v>1</v></c></row>'
        "</sheetData></worksheet>",
    }
    with zipfile.ZipFile(path, "w") as archive:
        for name, xml in parts.items():
            archive.writestr(
                name, '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + xml
            )
    return path


@pytest.mark.parametrize(
    ("main", "relationships"),
    [
        (MAIN, RELATIONSHIPS),
        ("http://purl.oclc.org/ooxml/spreadsheetml/main",
         "http://purl.oclc.org/ooxml/officeDocument/relationships"),
    ],
    ids=["transitional", "strict"],
)  # fmt: skip
def test_workbook_as_excel_writes_it(tmp_path: Path, main: str, relationships: str) -> None:
    path = excel_style_xlsx(tmp_path / "list.xlsx", main, relationships)
    contacts = ContactList(path, id_column="email")
    assert contacts.columns == ["email", "name", "postcode", "joined", "Tokyo"]
    assert [c.values for c in contacts] == [
        {"email": "ana@example.org", "name": "Ana Lima", "postcode": "02134", "joined": "1-Jan-04",
         "Tokyo": "TRUE"},
    ]  # fmt: skip


@pytest.mark.parametrize(("header", "found"), [(20, True), (21, False)])
def test_the_header_is_looked_for_in_the_first_20_rows(
    tmp_path: Path, header: int, found: bool
) -> None:
    book = openpyxl.Workbook()
    book.active[f"A{header}"], book.active[f"A{header + 1}"] = "email", "ana@example.org"
    book.save(tmp_path / "list.xlsx")
    if found:
        contacts = ContactList(tmp_path / "list.xlsx", id_column="email")
        assert contacts.description == f"list.xlsx, sheet 'Sheet', header on row {header}"
    else:
        assert "no header row with a column 'email' in the first 20 rows of sheet 'Sheet'" in error(
            tmp_path / "list.xlsx", id_column="email"
        )


@pytest.mark.parametrize("sheet", [0, 3])
def test_a_sheet_number_outside_the_workbook_is_refused(tmp_path: Path, sheet: int) -> None:
    assert error(two_lists(tmp_path / "lists.xlsx"), sheet=sheet).startswith(
        f"lists.xlsx: no sheet {sheet}"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "contacts_sheet = 0",
            "campaign.contacts_sheet must be a sheet's name or its number from 1, not 0",
        ),
        ('contacts_sheet = ""', "campaign.contacts_sheet must not be empty"),
        ("contacts_sheet = true", "campaign.contacts_sheet must be a string, not True"),
        ("contacts_header_row = 0", "campaign.contacts_header_row must be greater than 0, not 0"),
        (
            'contacts_header_row = "3"',
            "campaign.contacts_header_row must be a whole number, not '3'",
        ),
    ],
)
def test_bad_sheet_settings_are_refused_naming_the_key(
    tmp_path: Path, line: str, message: str
) -> None:
    config = tmp_path / "mailaction.toml"
    config.write_text(f"[campaign]\n{line}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert message in result.output


def test_sheet_settings_are_read(tmp_path: Path) -> None:
    config = tmp_path / "mailaction.toml"
    config.write_text("[campaign]\ncontacts_sheet = 2\ncontacts_header_row = 3\n", encoding="utf-8")
    settings = load_config(config).campaign
    assert (settings.contacts_sheet, settings.contacts_header_row) == (2, 3)
