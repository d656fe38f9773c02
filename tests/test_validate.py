"""Letter checks: addresses, header injection, subject, body, attachments, size, line length."""

from __future__ import annotations

import base64
import email.policy
import os
import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st

from mailaction.addresses import list_items
from mailaction.contacts import Contact
from mailaction.message import Attachment, Letter, LetterBuilder, prepare_letter
from mailaction.template import LetterTemplate, RenderedLetter
from mailaction.validate import (
    LetterRules,
    _address_list_problems,
    _address_problem,
    _is_plain_address,
    check_built,
    check_rendered,
)

HEADERS = "From: Campaign <campaign@example.org>\nTo: {{ email }}\nSubject: Free Maryia\n"
BODY = "Dear {{ name }},\n\nplease act.\n"
RULES = LetterRules()


class CountingBuilder(LetterBuilder):
    """The real builder, counting the letters it builds."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__("spring-appeal", base_dir)
        self.built: list[str] = []

    def build(self, rendered: RenderedLetter, contact_id: str, row: int) -> Letter:
        self.built.append(contact_id)
        return super().build(rendered, contact_id, row)


class VanishingAttachmentBuilder(CountingBuilder):
    """A builder whose attachments disappear between the checks and the build."""

    def attachment(self, written: str, literal: bool = True) -> Attachment:
        (self.base_dir / written).unlink()
        return super().attachment(written, literal)


def contact(row: int = 12, **values: str) -> Contact:
    values.setdefault("email", "ann@example.org")
    values.setdefault("name", "Ann")
    return Contact(row, values, "contacts.csv")


def render(
    headers: str = HEADERS, body: str = BODY, base_dir: Path | None = None, **values: str
) -> tuple[RenderedLetter, Contact]:
    template = LetterTemplate.from_string(f"{headers}\n{body}", "letter.txt", base_dir)
    person = contact(**values)
    return template.render(person), person


def problems(
    headers: str = HEADERS,
    body: str = BODY,
    base_dir: Path | None = None,
    rules: LetterRules = RULES,
    **values: str,
) -> list[str]:
    rendered, person = render(headers, body, base_dir, **values)
    return [str(problem) for problem in check_rendered(rendered, person, base_dir or Path(), rules)]


def fields(headers: str = HEADERS, body: str = BODY, **values: str) -> list[str]:
    rendered, person = render(headers, body, **values)
    return [problem.field for problem in check_rendered(rendered, person, Path(), RULES)]


def accepted_by_email_validator(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False, strict=True)
    except EmailNotValidError:
        return False
    return True


# Addresses


def test_a_complete_letter_has_no_problems() -> None:
    assert problems() == []


def test_a_bad_address_names_the_row_header_value_and_reason() -> None:
    assert problems(email="bob@") == [
        (
            "contacts.csv:12 (To): 'bob@' is not a valid address: "
            "There must be something after the @-sign."
        )
    ]


@pytest.mark.parametrize("name", ["Doe, John", "Smith (Jr.)", "ann@home", "Re: Ann"])
def test_a_name_that_needs_quotes_says_how_to_quote_it(name: str) -> None:
    headers = HEADERS.replace("To: {{ email }}", "To: {{ name }} <{{ email }}>")
    (problem,) = problems(headers, name=name)
    assert problem.startswith("contacts.csv:12 (To): ")
    assert problem.endswith('must be in double quotes in the template, like "{{ name }}" <{{ email }}>)')
    assert problems(headers.replace("{{ name }} <", '"{{ name }}" <'), name=name) == []


def test_a_bad_address_without_a_name_gets_no_quoting_hint() -> None:
    (problem,) = problems(email="ann@, bob@example.org")
    assert "double quotes" not in problem


@pytest.mark.parametrize("header", ["From", "Reply-To", "Sender", "To", "Cc", "Bcc"])
def test_every_address_header_is_checked(header: str) -> None:
    values = {"From": "campaign@example.org", "To": "ann@example.org", "Subject": "Hi"}
    headers = "".join(f"{name}: {value}\n" for name, value in {**values, header: "x@"}.items())
    assert fields(headers) == [header]


@pytest.mark.parametrize(
    "address",
    [
        "x@example.test",  # special-use names cannot receive mail
        "x@example.invalid",
        "x@mail.localhost",
        "x@localhost",
        "x@[127.0.0.1]",
        "a" * 65 + "@example.org",  # RFC 5321: 64 octets before the @
        "a b@example.org",
        "no-at-sign.example.org",
        '"quoted"@example.org',
        "a@example.org b@example.org",  # two addresses without a comma
        "Doe, John <jd@example.org>",  # a comma in a display name needs quotes
        "Bob <bob@example.org",
        '"Bob <bob@example.org>',
        "bob@example.org (Bob",
        "Bob <bob@example.org> and more",
        "team: a@example.org;",
        "bob@example.org (Bob)",  # comments: write "Bob <bob@example.org>"
        "bob@example.org(@ Jö )Jö",
        '"ann@example.org"',
        "ann@example.net <ann@example.org>",
        "<>",
    ],
)
def test_invalid_addresses_are_problems(address: str) -> None:
    found = problems(email=address)
    assert found and all("(To): " in problem for problem in found)
    assert all("is not a valid address" in problem for problem in found)


@pytest.mark.parametrize(
    "value",
    [
        "josé@example.org",  # SMTPUTF8
        "x@bücher.example",
        "x@xn--bcher-kva.example",
        "a" * 64 + "@example.org",
        "first.last+tag@mail.example.co.uk",
        "Ann Example <ann@example.org>",
        "<ann@example.org>",
        "Jörg Müller <j@example.org>",
        "Dr. J. Doe <j@example.org>",
        '"Doe, John \\"JD\\"" <jd@example.org>',
        "=?utf-8?q?J=C3=B6rg?= <j@example.org>",
        "ann@example.org, Bob <bob@example.net>, carol@example.com",
    ],
)
def test_valid_addresses_pass(value: str) -> None:
    assert problems(email=value) == []


@pytest.mark.parametrize("value", ["a@example.org, , b@example.org", "a@example.org,", ","])
def test_an_empty_item_in_an_address_list_is_one_problem(value: str) -> None:
    found = problems(email=value)
    assert len(found) == 1 and "has an empty item between commas" in found[0]


def test_every_problem_is_reported_not_just_the_first() -> None:
    found = problems(
        "From: {{ sender }}\nTo: {{ email }}\nSubject: {{ subject }}\n",
        "  \n",
        sender="campaign@",
        email="a@example.test, b@, c@example.org",
        subject="",
    )
    assert [problem.split(": ", 1)[0] for problem in found] == [
        "contacts.csv:12 (From)",
        "contacts.csv:12 (To)",
        "contacts.csv:12 (To)",
        "contacts.csv:12 (Subject)",
    ]


@pytest.mark.parametrize(
    "headers", ["To: ann@example.org\nSubject: Hi\n", "From:\nTo: ann@example.org\nSubject: Hi\n"]
)
def test_a_letter_needs_a_sender(headers: str) -> None:
    assert problems(headers) == [
        "contacts.csv:12 (From): no sender: the From header is missing or empty"
    ]


@pytest.mark.parametrize(
    "headers",
    [
        "From: campaign@example.org\nSubject: Hi\n",
        "From: campaign@example.org\nTo: {{ blank }}\nCc:\nSubject: Hi\n",
    ],
)
def test_a_letter_needs_a_recipient(headers: str) -> None:
    assert problems(headers, blank="") == [
        "contacts.csv:12 (To): no recipient: To, Cc and Bcc are all missing or empty"
    ]


@pytest.mark.parametrize("header", ["Cc", "Bcc"])
def test_cc_or_bcc_alone_is_a_recipient(header: str) -> None:
    headers = f"From: campaign@example.org\nTo:\n{header}: ann@example.org\nSubject: Hi\n"
    assert problems(headers) == []


def test_a_header_that_may_appear_once_is_reported_when_repeated() -> None:
    headers = f"{HEADERS}subject: Again\nX-Tag: a\nX-Tag: b\n"
    assert problems(headers) == [
        "contacts.csv:12 (Subject): appears 2 times; a message may have only one Subject header"
    ]


def test_a_long_value_is_shown_truncated_on_one_line() -> None:
    (found,) = problems(email="x" * 500 + "@")
    assert "\n" not in found and len(found) < 250
    assert "'" + "x" * 60 + "'..." in found


def test_deliverability_checking_goes_to_email_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailaction import validate

    asked: list[tuple[str, bool]] = []

    def recording(address: str, *, check_deliverability: bool, strict: bool) -> object:
        asked.append((address, check_deliverability))
        return validate_email(address, check_deliverability=False, strict=strict)

    monkeypatch.setattr(validate, "validate_email", recording)
    rules = LetterRules(check_deliverability=True)
    assert problems(rules=rules, email="deliverable.check@example.net") == []
    assert ("deliverable.check@example.net", True) in asked


# The fast address path agrees with email-validator

ADDRESS_CHARS = "aZ09._+-@-–é!#'\"<> (),;:[]\\"


@given(
    st.from_regex(r"[a-zA-Z0-9._+-]{1,70}@[a-zA-Z0-9.-]{1,30}\.[a-zA-Z0-9-]{1,8}", fullmatch=True)
)
def test_plain_addresses_are_exactly_what_email_validator_accepts(address: str) -> None:
    assert (_address_problem(address) is None) == accepted_by_email_validator(address)


@given(st.text(ADDRESS_CHARS, max_size=30).map(lambda text: text + "@example.org"))
def test_the_fast_path_accepts_nothing_that_email_validator_rejects(address: str) -> None:
    if _is_plain_address(address):
        assert accepted_by_email_validator(address)


@given(
    st.lists(
        st.tuples(st.text(max_size=20), st.sampled_from(["a@example.org", "b.c+d@example.net"])),
        min_size=1,
        max_size=4,
    )
)
def test_quoted_display_names_of_any_text_pass_and_read_back(
    mailboxes: list[tuple[str, str]],
) -> None:
    def quoted(name: str) -> str:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <' if name else "<"

    value = ", ".join(f"{quoted(name)}{address}>" for name, address in mailboxes)
    if any(char in value for char in "\r\n\0"):
        return  # header injection, checked elsewhere
    assert _address_list_problems(value, False) == ()
    assert [address for _, address in getaddresses([value])] == [a for _, a in mailboxes]


NAME_PARTS = ["Jö", " ", "Dr.", "Bob", "'", '"', "\\", ",", "(", ")", "@", ":", ";", "<", ">"]
SOME_ADDRESSES = st.sampled_from(["a@example.org", "b.c@example.net", "a{'=b@example.com"])
MAILBOXES = st.one_of(
    SOME_ADDRESSES,
    st.tuples(st.lists(st.sampled_from(NAME_PARTS), max_size=6).map("".join), SOME_ADDRESSES).map(
        "{0[0]} <{0[1]}>".format
    ),
)


@given(st.lists(MAILBOXES, min_size=1, max_size=3).map(", ".join))
def test_an_accepted_address_list_reads_the_same_with_the_email_package(value: str) -> None:
    if value.strip() and _address_list_problems(value, False) == ():
        addresses = [address for _, address in getaddresses([value])]
        assert len(addresses) == len(list_items(value))
        assert all(accepted_by_email_validator(address) for address in addresses)


# Header injection


@pytest.mark.parametrize(
    "subject",
    [
        "Hello\nBcc: x@example.org",
        "Hello\rBcc: x@example.org",
        "Hello\0",
        "=?UTF-8?Q?=0A?=Bcc: x@example.org",
        "=?utf-8?q?Hi=0D=0ABcc:_x@example.org?=",
        "=?utf-8?b?" + base64.b64encode(b"Hi\r\nBcc: x@example.org").decode() + "?=",
        "=?iso-8859-1*en?Q?=0A?=",
    ],
)
def test_line_breaks_in_header_values_are_injection(subject: str) -> None:
    found = problems(subject=subject, headers=HEADERS.replace("Free Maryia", "{{ subject }}"))
    assert len(found) == 1 and found[0].startswith("contacts.csv:12 (Subject): header injection: ")


def test_injection_in_an_address_header_is_one_problem() -> None:
    found = problems(email="ann@example.org\nBcc: x@example.org")
    assert len(found) == 1 and "header injection" in found[0] and "(To)" in found[0]


@pytest.mark.parametrize(
    "subject",
    ["=?utf-8?b?SGVsbG8=?=", "=?utf-8?b?!!!?=", "=?x-unknown?q?a=0Ab?=", "=?utf-8?q?=ZZ?="],
)
def test_harmless_or_undecodable_encoded_words_pass(subject: str) -> None:
    assert problems(subject=subject, headers=HEADERS.replace("Free Maryia", "{{ subject }}")) == []


# Subject, body, content type


@pytest.mark.parametrize("subject_line", ["Subject: {{ blank }}\n", "Subject:\n"])
def test_a_subject_header_must_not_be_empty(subject_line: str) -> None:
    headers = f"From: campaign@example.org\nTo: ann@example.org\n{subject_line}"
    assert problems(headers, blank="  ") == ["contacts.csv:12 (Subject): the subject is empty"]


def test_no_subject_and_an_empty_body_are_template_warnings_as_mailmerge_sends_them() -> None:
    headers = "From: campaign@example.org\nTo: ann@example.org\n"
    assert problems(headers, body="") == []
    template = LetterTemplate.from_string(headers + "\n", "letter.txt")
    assert template.warnings == [
        "letter.txt: no Subject header; the letters go without a subject",
        "letter.txt: the body is empty; the letters have headers only",
    ]
    assert LetterTemplate.from_string(HEADERS + "\nHi\n").warnings == []


@pytest.mark.parametrize("media", ["text/markdown", "TEXT/HTML", "text/plain; charset=utf-8"])
def test_supported_content_types_pass(media: str) -> None:
    assert problems(f"{HEADERS}Content-Type: {media}\n") == []


def test_an_unsupported_content_type_is_a_problem() -> None:
    assert fields(f"{HEADERS}Content-Type: text/markdwon\n") == ["Content-Type"]


# Attachments


def attach(tmp_path: Path, *names: str, rules: LetterRules = RULES) -> list[str]:
    headers = HEADERS + "".join(f"Attachment: {name}\n" for name in names)
    return problems(headers, base_dir=tmp_path, rules=rules)


def test_attachments_are_found_beside_the_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "briefing.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8")
    monkeypatch.chdir(tmp_path / "docs")
    assert attach(tmp_path, "docs/briefing.pdf", "photo.jpg", str(tmp_path / "photo.jpg")) == []


def test_a_missing_attachment_names_the_path_as_written(tmp_path: Path) -> None:
    (found,) = attach(tmp_path, "docs/briefing.pdf")
    assert found.startswith(
        "contacts.csv:12 (Attachment): attachment 'docs/briefing.pdf' not found"
    )


def test_an_attachment_that_is_a_folder_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    assert attach(tmp_path, "docs") == [
        "contacts.csv:12 (Attachment): attachment 'docs' is a folder, not a file"
    ]


def test_an_attachment_that_cannot_be_opened_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (found,) = attach(tmp_path, "loop")
    assert "attachment 'loop' cannot be read: " in found


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_attachment_is_a_problem(tmp_path: Path) -> None:
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(b"%PDF")
    secret.chmod(0)
    assert attach(tmp_path, "secret.pdf") == [
        "contacts.csv:12 (Attachment): attachment 'secret.pdf' cannot be read: permission denied"
    ]


def test_an_attachment_over_the_size_limit_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 2001)
    (tmp_path / "small.bin").write_bytes(b"x" * 2000)
    assert attach(tmp_path, "big.bin", "small.bin", rules=LetterRules(max_message_size=2000)) == [
        (
            "contacts.csv:12 (Attachment): attachment 'big.bin' is 2.0 KB, "
            "over the message size limit of 2.0 KB"
        )
    ]


def test_an_empty_attachment_header_is_a_problem(tmp_path: Path) -> None:
    found = problems(HEADERS + "Attachment: {{ file }}\n", base_dir=tmp_path, file="")
    assert found == [
        (
            "contacts.csv:12 (Attachment): the Attachment header is empty; "
            "name a file or remove the header"
        )
    ]


def test_attachment_paths_from_contact_values_stay_in_the_template_folder(tmp_path: Path) -> None:
    folder = tmp_path / "campaign"
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "a.pdf").write_bytes(b"%PDF")
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    (folder / "docs" / "out.pdf").symlink_to(tmp_path / "secret.txt")
    (folder / "docs" / "null.pdf").symlink_to("/dev/null")
    header = HEADERS + "Attachment: docs/{{ doc }}\n"
    assert problems(header, base_dir=folder, doc="a.pdf") == []
    assert problems(header, base_dir=folder, doc="../docs/a.pdf") == []  # still inside
    outside = "is outside the template's folder; only files there can be attached by a value"
    for doc in ["../../secret.txt", "out.pdf", "null.pdf", "../../../../proc/self/environ"]:
        assert problems(header, base_dir=folder, doc=doc) == [
            (
                f"contacts.csv:12 (Attachment): attachment 'docs/{doc}' comes from the contact list "
                f"and {outside} (from column doc)"
            )
        ]
    whole = HEADERS + "Attachment: {{ doc }}\n"
    for doc in ["/etc/passwd", "/proc/self/environ", str(folder / "docs" / "a.pdf")]:
        (found,) = problems(whole, base_dir=folder, doc=doc)
        assert found.startswith("contacts.csv:12 (Attachment): attachment '")
        assert "comes from the contact list and is an absolute path" in found
        assert found.endswith("(from column doc)")


def test_an_attachments_folder_lets_values_name_files_there(tmp_path: Path) -> None:
    (tmp_path / "letter").mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "b.pdf").write_bytes(b"%PDF")
    header = HEADERS + "Attachment: ../shared/{{ doc }}\n"
    rules = LetterRules(attachments=tmp_path / "shared")
    assert problems(header, base_dir=tmp_path / "letter", rules=rules, doc="b.pdf") == []
    (found,) = problems(header, base_dir=tmp_path / "letter", doc="b.pdf")
    assert "is outside the template's folder;" in found
    (found,) = problems(header, base_dir=tmp_path / "letter", rules=rules, doc="../letter/../../x")
    assert "outside the template's folder or the attachments folder" in found


def test_the_authors_own_paths_expand_home_and_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "brief.pdf").write_bytes(b"%PDF")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BRIEFS", str(tmp_path))
    assert attach(tmp_path / "elsewhere", "~/brief.pdf", "$BRIEFS/brief.pdf", "${BRIEFS}/brief.pdf") == []
    header = HEADERS + "Attachment: {{ doc }}\n"
    (found,) = problems(header, base_dir=tmp_path / "elsewhere", doc="$BRIEFS/brief.pdf")
    assert "not found" in found  # a contact's value is never expanded


# Built messages


def test_a_message_over_the_size_limit_names_both_sizes() -> None:
    found = check_built(
        b"x\r\n" * 700_000, contact(), LetterRules(max_message_size=2_000_000)
    )
    assert [str(problem) for problem in found] == [
        "contacts.csv:12: the message is 2.1 MB, over the limit of 2.0 MB"
    ]


def test_a_line_over_998_octets_is_a_problem() -> None:
    data = b"Subject: x\r\n\r\n" + b"a" * 998 + b"\r\n" + b"b" * 999 + b"\r\n"
    found = check_built(data, contact(), RULES)
    assert [str(problem) for problem in found] == [
        "contacts.csv:12: line 4 of the message is 999 octets long; SMTP allows 998"
    ]
    assert check_built(data[:-1001], contact(), RULES) == []


# Preparing a letter


def test_a_valid_letter_is_built_and_returned(tmp_path: Path) -> None:
    rendered, person = render(HEADERS + "Bcc: archive@example.net\n")
    letter, found = prepare_letter(rendered, person, "ann", CountingBuilder(tmp_path), RULES)
    assert found == []
    assert letter is not None and (letter.contact_id, letter.row) == ("ann", 12)
    assert letter.recipients == ("ann@example.org", "archive@example.net")
    assert b"Dear Ann," in letter.data


def test_a_letter_with_problems_is_not_built(tmp_path: Path) -> None:
    rendered, person = render(email="bob@")
    builder = CountingBuilder(tmp_path)
    letter, found = prepare_letter(rendered, person, "bob", builder, RULES)
    assert letter is None and [problem.field for problem in found] == ["To"]
    assert builder.built == []


def test_a_rendering_problem_is_not_repeated_as_an_empty_header(tmp_path: Path) -> None:
    rendered, person = render(HEADERS.replace("{{ email }}", "{{ emial }}"))
    letter, found = prepare_letter(rendered, person, "ann", CountingBuilder(tmp_path), RULES)
    assert letter is None
    assert len(found) == 1 and "uses {{ emial }}, which is not a column" in found[0].message


def test_a_built_message_over_the_limit_is_not_returned(tmp_path: Path) -> None:
    rendered, person = render(body="x" * 3000)
    rules = LetterRules(max_message_size=2000)
    letter, found = prepare_letter(rendered, person, "ann", CountingBuilder(tmp_path), rules)
    assert letter is None and "over the limit of 2.0 KB" in found[0].message


def test_an_attachment_lost_before_building_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "briefing.pdf").write_bytes(b"%PDF-1.4")
    rendered, person = render(HEADERS + "Attachment: briefing.pdf\n", base_dir=tmp_path)
    builder = VanishingAttachmentBuilder(tmp_path)
    letter, found = prepare_letter(rendered, person, "ann", builder, RULES)
    assert letter is None and builder.built == ["ann"]
    assert len(found) == 1
    assert str(found[0]).startswith("contacts.csv:12: cannot build the message: ")
    assert "'briefing.pdf'" in found[0].message


def body_text(letter: Letter | None) -> str:
    assert letter is not None
    message = BytesParser(policy=email.policy.default).parsebytes(letter.data)
    assert isinstance(message, EmailMessage)
    return message.get_content()


def test_a_2000_character_body_line_is_encoded_and_passes(tmp_path: Path) -> None:
    long_line = "word " * 399 + "word"
    rendered, person = render(body=long_line + "\n")
    letter, found = prepare_letter(rendered, person, "ann", CountingBuilder(tmp_path), RULES)
    assert found == [] and letter is not None
    assert max(len(line) for line in letter.data.split(b"\r\n")) <= 998
    assert body_text(letter).splitlines() == [long_line]


def test_a_line_with_a_single_dot_survives_building(tmp_path: Path) -> None:
    rendered, person = render(body="first\n.\nlast\n")
    letter, found = prepare_letter(rendered, person, "ann", CountingBuilder(tmp_path), RULES)
    assert found == []
    assert body_text(letter).splitlines() == ["first", ".", "last"]


# Speed


def test_checking_a_typical_letter_is_fast() -> None:
    template = LetterTemplate.from_string(
        "From: Campaign <campaign@example.org>\nReply-To: replies@example.org\n"
        "To: {{ name }} <{{ email }}>\nSubject: A letter for {{ name }}\n\n" + BODY * 20,
        "letter.txt",
    )
    people = [contact(n + 2, name=f"P{n}", email=f"p.{n}@example.org") for n in range(5000)]
    letters = [(template.render(person), person) for person in people]
    start = time.perf_counter()
    found = [check_rendered(rendered, person, Path(), RULES) for rendered, person in letters]
    per_second = len(letters) / (time.perf_counter() - start)
    assert not any(found)
    assert per_second > 25_000  # measured ~200,000/s; validate as a whole needs 25,000/s
