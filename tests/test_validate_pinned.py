"""Letter checks that mutation testing found unpinned: encoded words and the fast address path."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailaction import validate
from mailaction.validate import (
    LetterRules,
    _address_problem,
    _is_plain_address,
    _size,
    check_built,
)
from tests.test_validate import HEADERS, accepted_by_email_validator, contact, problems

SUBJECT_HEADERS = HEADERS.replace("Free Maryia", "{{ subject }}")
SMUGGLED = b"Hi\nBcc: x@example.org"
UNPADDED = base64.b64encode(b"Hi\nBcc:").decode().rstrip("=")  # 10 characters: "==" left out


def encoded(charset: str, encoding: str, data: bytes) -> str:
    return f"=?{charset}?{encoding}?{base64.b64encode(data).decode()}?="


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param(encoded("UTF-8", "B", b"Hi\r\nBcc: x@example.org"), id="upper-case-B"),
        pytest.param(f"=?utf-8?b?{UNPADDED}?=", id="unpadded"),
        pytest.param(encoded("utf-8", "B", b"\xff\xfe" + SMUGGLED), id="undecodable-bytes-B"),
        pytest.param("=?utf-8?q?=FF=0ABcc:_x@example.org?=", id="undecodable-bytes-Q"),
        pytest.param("=?utf-8?q?Hi=0aBcc:_x@example.org?=", id="lower-case-hex"),
        pytest.param("=??Q?Hi=0ABcc:_x@example.org?=", id="no-charset"),
        pytest.param("Re: =?utf-8?q?ok?= =?utf-8?q?=0D?=", id="second-word"),
    ],
)
def test_a_line_break_in_any_encoded_word_is_injection(subject: str) -> None:
    found = problems(subject=subject, headers=SUBJECT_HEADERS)
    reason = f"header injection: {subject!r} hides a line break in an encoded word"
    assert found == [f"contacts.csv:12 (Subject): {reason}"]


@pytest.mark.parametrize(
    "subject", ["=?UTF-8?B?SGkgQW5u?=", "=?utf-8?q?Hi_Ann=2C_welcome?=", "a =? b ?= c"]
)
def test_encoded_words_without_a_line_break_pass(subject: str) -> None:
    assert problems(subject=subject, headers=SUBJECT_HEADERS) == []


@pytest.mark.parametrize(
    "address",
    [
        "ann@ab--cd.example.org",  # two letters, two dashes: reserved for IDNA
        "ann@ab--cd.org",
        "ann@example.local",  # special-use name
        "ann@mail.invalid",
        "ann@-ab.example.org",
        "a..b@example.org",
        "a" * 65 + "@example.org",
        "ann@" + "a" * 64 + ".example.org",
        "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".org",  # 255 characters
    ],
)
def test_the_fast_path_leaves_what_email_validator_rejects_to_it(address: str) -> None:
    assert not accepted_by_email_validator(address)
    assert not _is_plain_address(address)
    assert _address_problem(address) is not None


@pytest.mark.parametrize("address", ["ann@example.org", "a.b-c+d_e@mail-1.example.net"])
def test_the_fast_path_takes_common_addresses(address: str) -> None:
    assert _is_plain_address(address) and _address_problem(address) is None


LABELS = st.text("ab0-", min_size=1, max_size=6) | st.sampled_from(["xn--ls8h", "a" * 64, "-"])
TOP = st.sampled_from(["org", "example", "local", "invalid", "test", "onion", "c0m", "x-y", "o"])
LOCAL = st.lists(st.text("ab0_+-", min_size=1, max_size=8), min_size=1, max_size=3).map(".".join)


@given(LOCAL | st.just("a" * 65), st.lists(LABELS, min_size=1, max_size=3), TOP)
def test_the_fast_path_accepts_only_what_email_validator_accepts(
    local: str, labels: list[str], top: str
) -> None:
    address = f"{local}@{'.'.join([*labels, top])}"
    if _is_plain_address(address):
        assert accepted_by_email_validator(address), address
    assert (_address_problem(address) is None) == accepted_by_email_validator(address)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        # The address inside the brackets is valid: the reason is the reading, not the address.
        ("<ann@example.org> x", "it cannot be read as one mailbox like 'Name <name@example.org>'"),
        # Otherwise email-validator's reason for the address inside the brackets, or the item.
        ("Ann (x) <.ann@example.org>", "An email address cannot start with a period."),
        ("ann@example.org>", "The part after the @-sign contains invalid characters: '>'."),
        ("<x> Ann <.ann@example.org>", "An email address cannot start with a period."),
    ],
)
def test_an_item_that_is_no_mailbox_gets_the_reason_for_the_address_in_it(
    item: str, reason: str
) -> None:
    found = problems(email=item)
    assert len(found) == 1
    assert found[0].startswith(f"contacts.csv:12 (To): {item!r} is not a valid address: {reason}")


def test_a_literal_attachment_is_never_blamed_on_a_column() -> None:
    # A column holding the same text as the template's own path did not put it there.
    found = problems(headers=HEADERS + "Attachment: brochure.pdf\n", town="brochure.pdf")
    assert found == [
        "contacts.csv:12 (Attachment): attachment 'brochure.pdf' not found (looked for brochure.pdf)"
    ]


def test_an_attachment_gone_between_being_found_and_measured_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race, made certain: the file found is gone by the time its size is read.
    monkeypatch.setattr(validate, "find_attachment", lambda *found: tmp_path / "gone.pdf")
    assert problems(headers=HEADERS + "Attachment: gone.pdf\n", base_dir=tmp_path) == [
        ("contacts.csv:12 (Attachment): attachment 'gone.pdf' cannot be read: No such file or"
        " directory")
    ]


def test_an_attachment_path_from_two_columns_names_both() -> None:
    headers = HEADERS + "Attachment: {{ folder }}/{{ file }}\n"
    assert problems(headers=headers, folder="docs", file="a.pdf") == [
        ("contacts.csv:12 (Attachment): attachment 'docs/a.pdf' not found (looked for docs/a.pdf)"
        " (from column folder, file)")
    ]


def test_an_unsupported_content_type_lists_the_supported_ones() -> None:
    assert problems(headers=HEADERS + "Content-Type: application/pdf\n") == [
        ("contacts.csv:12 (Content-Type): 'application/pdf' is not supported; use"
        " multipart/alternative, text/html, text/markdown, text/plain")
    ]


def test_a_multipart_body_is_checked_for_its_parts() -> None:
    headers = HEADERS + 'Content-Type: multipart/alternative; boundary="b"\n'
    assert problems(headers=headers, body="no parts here\n") == [
        "contacts.csv:12 (body): no part starts with the boundary line '--b'"
    ]
    body = "--b\nContent-Type: text/plain\n\nHi\n--b--\n"
    assert problems(headers=headers, body=body) == []


def test_problems_with_the_whole_message_name_no_field() -> None:
    data = b"x\r\n" * 700 + b"y" * 999 + b"\r\n"
    found = check_built(data, contact(), LetterRules(max_message_size=1000))
    assert [problem.field for problem in found] == ["", ""]


def test_a_message_exactly_at_the_size_limit_passes() -> None:
    assert check_built(b"x\r\n" * 500, contact(), LetterRules(max_message_size=1500)) == []


@pytest.mark.parametrize(
    ("octets", "shown"),
    [(812_345, "812.3 KB"), (1_000_000, "1.0 MB"), (2_950_000, "3.0 MB")],
)
def test_sizes_are_shown_in_kb_below_a_million_octets_and_in_mb_above(
    octets: int, shown: str
) -> None:
    assert _size(octets) == shown
