"""Letter templates: parsing the header block, compiling, sandboxed rendering per contact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import Template

from mailaction.errors import TemplateError
from mailaction.template import LetterTemplate, template_variables

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "templates" / "urgent-action.txt"


@dataclass(frozen=True)
class Contact:
    """The shape of mailaction.contacts.Contact."""

    row: int
    values: dict[str, str]
    source: str


def contact(row: int = 2, **values: str) -> Contact:
    return Contact(row, values, "contacts.csv")


def template(text: str) -> LetterTemplate:
    return LetterTemplate.from_string(text, "letter.txt")


def compile_error(text: str) -> str:
    with pytest.raises(TemplateError) as caught:
        template(text)
    return str(caught.value)


# Parsing


def test_headers_and_body_are_split_at_the_first_blank_line() -> None:
    letter = template("To: {{ email }}\nSubject: Hi\n\nHello\n\nBye\n").render(
        contact(email="a@example.org")
    )
    assert letter.headers == [("To", "a@example.org"), ("Subject", "Hi")]
    assert letter.body == "Hello\n\nBye\n"
    assert letter.problems == []


def test_continuation_lines_fold_into_the_previous_header() -> None:
    letter = template("Subject: Release\n  {{ name }}\n\tnow\nTo: x@example.org\n\nBody").render(
        contact(name="Maryia")
    )
    assert letter.headers == [("Subject", "Release Maryia now"), ("To", "x@example.org")]


def test_crlf_template_renders_with_lf_line_endings() -> None:
    letter = template("Subject: Hi\r\nTo: x@example.org\r\n\r\nLine 1\r\nLine 2\r\n").render(
        contact()
    )
    assert letter.headers == [("Subject", "Hi"), ("To", "x@example.org")]
    assert letter.body == "Line 1\nLine 2\n"


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "letter.txt"
    path.write_bytes("\ufeffSubject: Grüße\n\nBody\n".encode())
    loaded = LetterTemplate.from_file(path)
    assert loaded.render(contact()).headers == [("Subject", "Grüße")]
    assert loaded.path == path and loaded.base_dir == tmp_path


def test_repeated_headers_are_all_kept_in_order() -> None:
    letter = template("Attachment: a.pdf\nSubject: Hi\nattachment: {{ file }}\n\nBody").render(
        contact(file="b.pdf")
    )
    assert letter.all("Attachment") == ["a.pdf", "b.pdf"]
    assert letter.header("ATTACHMENT") == "a.pdf"
    assert letter.header("Cc") is None and letter.all("Cc") == []
    assert [name for name, _ in letter.headers] == ["Attachment", "Subject", "attachment"]


@pytest.mark.parametrize("text", ["To: {{ email }}\nSubject: Hi\n", "To: {{ email }}\nSubject: Hi"])
def test_a_template_of_headers_only_has_an_empty_body(text: str) -> None:
    letter = template(text).render(contact(email="ann@example.org"))
    assert letter.headers == [("To", "ann@example.org"), ("Subject", "Hi")]
    assert letter.body == ""


def test_body_lines_without_a_blank_line_before_them_are_an_error() -> None:
    message = compile_error("To: x@example.org\nDear Minister,\n")
    assert message == "letter.txt:2: expected a header line like 'Subject: ...' before the blank line"


def test_first_line_must_be_a_header() -> None:
    message = compile_error("Dear Minister,\n\nBody")
    assert (
        message == "letter.txt:1: expected a header line like 'Subject: ...' before the blank line"
    )
    assert compile_error("  Subject: indented\n\nBody").startswith(
        "letter.txt:1: expected a header"
    )


def test_header_line_without_colon_names_its_line() -> None:
    message = compile_error("To: x@example.org\nSubject: Hi\nDear Minister,\n\nBody")
    assert message.startswith("letter.txt:3: expected a header line")


@pytest.mark.parametrize("name", ["Reply To", "Sübject", ""])
def test_invalid_header_name_is_an_error(name: str) -> None:
    message = compile_error(f"To: x@example.org\n{name}: y\n\nBody")
    assert message.startswith(f"letter.txt:2: {name!r} is not a valid header name")


def test_missing_template_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="missing.txt: template file not found"):
        LetterTemplate.from_file(tmp_path / "missing.txt")


def test_template_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "letter.txt"
    path.write_bytes("Subject: Hi\n\nDear Jos\xe9,\n".encode("cp1252"))
    with pytest.raises(TemplateError, match=r"^letter.txt:3: not UTF-8"):
        LetterTemplate.from_file(path)


# Syntax errors carry the template file's line number


def test_syntax_error_in_a_header_names_its_line() -> None:
    message = compile_error("To: x@example.org\nFrom: y@example.org\nSubject: Hi {{ name }\n\nBody")
    assert message == "letter.txt:3: unexpected '}'"


def test_syntax_error_in_the_body_names_the_file_line() -> None:
    message = compile_error(
        "To: x@example.org\nSubject: Hi\n\nDear {{ name }},\n\n{% if x %}\nok\n"
    )
    assert message.startswith("letter.txt:6: Unexpected end of template")
    message = compile_error("To: x@example.org\nSubject: Hi\n\nLine 4\nLine 5\n{{ a b }}\n")
    assert message.startswith("letter.txt:6: ")


# Variables


def test_columns_that_are_not_identifiers_get_snake_case_aliases() -> None:
    values = {"First Name": "Ana", "e-mail": "ana@example.org", "Town/City": "Porto"}
    variables = template_variables(Contact(2, values, "contacts.csv"))
    assert variables["first_name"] == "Ana"
    assert variables["e_mail"] == "ana@example.org"
    assert variables["town_city"] == "Porto"
    assert variables["First Name"] == "Ana"
    assert variables["contact"] == values


def test_capitalised_columns_get_lower_case_aliases() -> None:
    variables = template_variables(Contact(2, {"Email": "ana@example.org", "Town": "Porto"}, "contacts.csv"))
    assert (variables["email"], variables["town"]) == ("ana@example.org", "Porto")
    assert variables["Email"] == "ana@example.org"


def test_an_alias_never_shadows_a_real_column() -> None:
    person = Contact(2, {"First Name": "Alias", "first_name": "Real"}, "contacts.csv")
    text = "Subject: x\n\n{{ first_name }} / {{ contact['First Name'] }}"
    assert template(text).render(person).body == "Real / Alias"


def test_contact_mapping_reaches_original_column_names() -> None:
    person = Contact(2, {"First Name": "Ana", "Town/City": "Porto"}, "contacts.csv")
    letter = template('Subject: {{ contact["First Name"] }}\n\n{{ town_city }}').render(person)
    assert letter.headers == [("Subject", "Ana")] and letter.body == "Porto"


def test_values_are_data_never_template_source() -> None:
    letter = template("Subject: {{ name }}\n\n{{ name }}").render(
        contact(name="{{ 7*7 }}{% if 1 %}x{% endif %}")
    )
    assert letter.header("Subject") == "{{ 7*7 }}{% if 1 %}x{% endif %}"
    assert letter.body == "{{ 7*7 }}{% if 1 %}x{% endif %}"


def test_newline_in_a_value_stays_inside_its_header_value() -> None:
    letter = template("Subject: Hello {{ name }}\nTo: x@example.org\n\nBody").render(
        contact(name="Ana\nBcc: victim@example.com")
    )
    assert letter.headers == [
        ("Subject", "Hello Ana\nBcc: victim@example.com"),
        ("To", "x@example.org"),
    ]
    assert letter.header("Bcc") is None


# Problems while rendering one row


def test_undefined_variable_is_the_templates_problem_naming_its_line_and_the_columns() -> None:
    text = "To: {{ email }}\nSubject: News from {{ town }}\n\nDear {{ first_name }},\n"
    letter = template(text).render(contact(7, email="ana@example.org", first_name="Ana"))
    assert len(letter.problems) == 1
    problem = letter.problems[0]
    # The same in every row: a problem of the template (row None), reported once by validate.
    assert (problem.source, problem.row, problem.field) == ("letter.txt:2", None, "Subject")
    assert str(problem) == (
        "letter.txt:2 (Subject): uses {{ town }}, which is not a column; "
        "the columns are: email, first_name"
    )
    assert letter.header("To") == "ana@example.org"
    assert letter.body == "Dear Ana,\n"


def test_every_failing_part_of_a_row_is_reported() -> None:
    letter = template("Subject: {{ subject }}\n\n{{ greeting }}\n{% if town %}x{% endif %}").render(
        contact()
    )
    assert [(p.field, "uses {{ subject }}" in p.message) for p in letter.problems] == [
        ("Subject", True),
        ("body", False),
    ]
    assert letter.problems[1].source == "letter.txt:3"
    assert letter.problems[1].message.startswith("uses {{ greeting }}, which is not a column")
    assert letter.header("Subject") == "" and letter.body == ""


def test_undefined_variable_suggests_a_close_column() -> None:
    letter = template("Subject: x\n\n{{ frist_name }}").render(contact(first_name="Ana"))
    assert "did you mean {{ first_name }}? The columns are: first_name" in letter.problems[0].message


def test_undefined_variable_names_the_line_it_is_on() -> None:
    text = "Subject: x\n\nDear friend,\n\n{% if 1 %}\nYou live in {{ town }}.\n{% endif %}\n"
    letter = template(text).render(contact(name="Ana"))
    assert letter.problems[0].source == "letter.txt:6"


def test_missing_key_of_contact_is_a_problem() -> None:
    letter = template('Subject: x\n\n{{ contact["Town"] }}').render(contact(town="Porto"))
    assert letter.problems[0].field == "body"
    assert "'Town'" in letter.problems[0].message and "columns: town" in letter.problems[0].message


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__[1].__subclasses__()",
        "cycler.__init__.__globals__",
        "contact.clear()",
    ],
)
def test_sandbox_violation_is_a_problem_not_output(expression: str) -> None:
    person = contact(name="Ana")
    letter = template(f"Subject: Hi\n\n{{{{ {expression} }}}}").render(person)
    assert letter.body == ""
    assert [p.field for p in letter.problems] == ["body"]
    assert letter.problems[0].message.startswith("template tried an unsafe operation: ")
    assert person.values == {"name": "Ana"}


def test_runtime_error_in_a_template_expression_is_a_problem() -> None:
    letter = template("Subject: {{ 1 / 0 }}\n\n{% include 'other.txt' %}").render(contact())
    assert [p.field for p in letter.problems] == ["Subject", "body"]
    assert letter.problems[0].message == (
        "ZeroDivisionError: division by zero (in the Subject header of letter.txt)"
    )


def test_include_reads_files_beside_the_template_and_nowhere_else(tmp_path: Path) -> None:
    (tmp_path / "footer.txt").write_text("Yours, {{ name }}\n", encoding="utf-8")
    (tmp_path / "escape.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8")
    (tmp_path.parent / "outside.txt").write_text("secret", encoding="utf-8")
    letter_file = tmp_path / "letter.txt"
    letter_file.write_text("Subject: Hi\n\nDear {{ name }}\n{% include 'footer.txt' %}", encoding="utf-8")
    assert LetterTemplate.from_file(letter_file).render(contact(name="Ana")).body == "Dear Ana\nYours, Ana\n"
    for included, message in [
        ("../outside.txt", "cannot include '../outside.txt': no such file in the template's folder"),
        ("escape.txt", "template tried an unsafe operation"),
    ]:
        letter_file.write_text(f"Subject: Hi\n\n{{% include '{included}' %}}", encoding="utf-8")
        letter = LetterTemplate.from_file(letter_file).render(contact(name="Ana"))
        assert letter.body == ""
        assert letter.problems[0].message.startswith(message)


def test_include_named_by_a_contact_stays_in_the_template_folder(tmp_path: Path) -> None:
    (tmp_path / "letter.txt").write_text("Subject: Hi\n\n{% include part %}", encoding="utf-8")
    (tmp_path / "intro.txt").write_text("Hello\n", encoding="utf-8")
    (tmp_path.parent / "secret.txt").write_text("secret", encoding="utf-8")
    (tmp_path / "out.txt").symlink_to(tmp_path.parent / "secret.txt")
    (tmp_path / "null.txt").symlink_to("/dev/null")
    (tmp_path / "link.txt").symlink_to(tmp_path / "intro.txt")
    letter_template = LetterTemplate.from_file(tmp_path / "letter.txt")
    assert letter_template.render(contact(part="intro.txt")).body == "Hello\n"
    assert letter_template.render(contact(part="link.txt")).body == "Hello\n"  # a link inside
    for part, reason in [
        ("out.txt", "it leads outside the template's folder"),
        ("null.txt", "it leads outside the template's folder"),
        ("/proc/self/environ", "no such file in the template's folder"),  # looked for inside
        ("../secret.txt", "no such file in the template's folder"),
    ]:
        letter = letter_template.render(contact(part=part))
        assert letter.body == ""
        assert letter.problems[0].message.startswith(f"cannot include {part!r}: {reason}")
    (tmp_path / "folder").mkdir()
    assert "not a regular file" in letter_template.render(contact(part="folder")).problems[0].message


def test_assignments_do_not_leak_between_parts_or_rows() -> None:
    letter_template = template("Subject: {% set name = 'X' %}{{ name }}\n\n{{ name }}")
    assert letter_template.render(contact(name="Ana")).body == "Ana"
    assert letter_template.render(contact(name="Bo")).headers == [("Subject", "X")]


# The example letter


def example_contact(**overrides: str) -> Contact:
    values = {
        "email": "jane.doe@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "town": "Leeds",
        "country": "United Kingdom",
        "language": "en",
        "personal_note": "I have followed Maryia's case since 2020.",
    }
    return Contact(5, values | overrides, "supporters.csv")


def test_example_template_renders_a_full_contact() -> None:
    example = LetterTemplate.from_file(EXAMPLE)
    letter = example.render(example_contact())
    assert letter.problems == []
    assert letter.header("From") == '"Jane Doe via Free Maryia Kalesnikava" <letters@example.org>'
    assert letter.header("Reply-To") == '"Jane Doe" <jane.doe@example.com>'
    assert (
        letter.header("To") == "Minister of Foreign Affairs <minister@foreign-ministry.example.org>"
    )
    assert letter.header("Content-Type") == "text/markdown"
    for attachment in letter.all("Attachment"):
        assert (example.base_dir / attachment).read_bytes().startswith(b"%PDF-")
    body = letter.body
    assert "vul. Lenina 19, Minsk 220030, Belarus" in body and "Dear Minister," in body
    assert "\n1. " in body and "\n2. " in body and "\n3. " in body
    assert "I have followed Maryia's case since 2020." in body
    assert body.rstrip().endswith("Jane Doe\nLeeds, United Kingdom")
    assert len(EXAMPLE.read_bytes()) < 2600


def test_example_template_renders_with_blank_optional_columns() -> None:
    letter = LetterTemplate.from_file(EXAMPLE).render(
        example_contact(town="", country="", personal_note="")
    )
    assert letter.problems == []
    assert letter.body.endswith("Yours sincerely,\n\nJane Doe\n")
    assert "\n\n\n" not in letter.body
    only_country = LetterTemplate.from_file(EXAMPLE).render(example_contact(town=""))
    assert only_country.body.endswith("Jane Doe\nUnited Kingdom\n")


# Any text survives rendering


@given(st.text())
def test_any_value_renders_back_exactly(value: str) -> None:
    assert BODY_TEMPLATE.render(contact(name=value)).body == value


BODY_TEMPLATE = template("Subject: x\n\n{{ name }}")


@given(st.text().filter(lambda text: not any(mark in text for mark in ("{{", "{%", "{#"))))
def test_a_part_without_jinja_syntax_renders_as_jinja_would(text: str) -> None:
    source = text.replace("\r", "")
    letter = template(f"Subject: {{{{ name }}}}\n\n{source}").render(contact(name="Ana"))
    assert letter.body == Template(source, keep_trailing_newline=True).render()
    assert letter.problems == []


def test_constant_headers_are_the_same_on_every_row() -> None:
    letter_template = template("To: Team <team@example.org>\nSubject: Hi {{ name }}\n\nText\n")
    for name in ("Ana", "Bo"):
        letter = letter_template.render(contact(name=name))
        assert letter.headers == [("To", "Team <team@example.org>"), ("Subject", f"Hi {name}")]
        assert letter.body == "Text\n"
