"""mailmerge's own template and database test cases, run through mailaction.

Each test is one of mailmerge's (tests/test_template_message.py, test_template_message_encodings.py,
test_database.py, same names), with reserved domains: the template and a CSV database go through
the whole pipeline (contacts, template, validation, message), and the parsed message is compared
with what mailmerge's test expects: recipients, decoded headers, text and HTML parts, attachments.
Where mailaction differs on purpose, the test says so and docs/mailmerge.md gives the reason.
"""

from __future__ import annotations

import csv
import email.policy
import re
import textwrap
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import markdown
import pytest

from mailaction.campaign import Campaign
from mailaction.config import CampaignConfig, Config
from mailaction.errors import ContactsError, Problem

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2 + b"\xff\xd9"


@dataclass
class Merged:
    """One contact's letter as mailaction makes it, or its problems."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    problems: list[Problem]
    warnings: list[str]

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return part.get_content().replace("\r\n", "\n")

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return part.get_content().replace("\r\n", "\n")

    def attachments(self) -> list[tuple[str, bytes, str | None]]:
        """(file name, content, Content-ID) of every part that is not the text or the HTML."""
        bodies = [self.message.get_body(preferencelist=(kind,)) for kind in ("plain", "html")]
        found = []
        for part in self.message.walk():
            if part.is_multipart() or any(part is body for body in bodies):
                continue
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append((part.get_filename() or "", payload, part["Content-ID"]))
        return found


def merge(
    folder: Path, template: str, context: dict[str, str] | None = None, database: str | None = None
) -> list[Merged]:
    """Every letter of ``template`` (dedented) for the database, or one row made of ``context``."""
    template_path = folder / "mailmerge_template.txt"
    template_path.write_text(textwrap.dedent(template), encoding="utf-8")
    database_path = folder / "mailmerge_database.csv"
    if database is None:
        row = context or {"n": "1"}  # mailmerge renders an empty context; a CSV needs a column
        with database_path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)
        id_column = next(iter(row))
    else:
        database_path.write_text(textwrap.dedent(database), encoding="utf-8")
        id_column = "email"
    config = Config(campaign=CampaignConfig(
        name="mailmerge", template=template_path, contacts=database_path, id_column=id_column,
        log=folder / "log.sqlite",
    ))  # fmt: skip
    campaign = Campaign(config)
    merged = []
    for prepared in campaign.rows():
        data = prepared.letter.data if prepared.letter else b""
        message = BytesParser(policy=email.policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)
        sender, recipients = "", []
        if prepared.letter:
            sender, recipients = prepared.letter.sender, list(prepared.letter.recipients)
        merged.append(Merged(sender, recipients, message, prepared.problems, campaign.template.warnings))
    return merged


def one(folder: Path, template: str, context: dict[str, str] | None = None) -> Merged:
    """The one letter for ``context``; it must have no problems."""
    (letter,) = merge(folder, template, context)
    assert letter.problems == []
    return letter


def refused(folder: Path, template: str, context: dict[str, str] | None = None) -> str:
    """The problems of the one letter for ``context``, which must have some."""
    (letter,) = merge(folder, template, context)
    assert letter.problems
    return "\n".join(str(problem) for problem in letter.problems)


def squeeze(html: str) -> str:
    """HTML without whitespace between and around tags, to compare documents."""
    return re.sub(r"\s*(<[^>]+>)\s*", r"\1", html).strip()


def body_html(html: str) -> str:
    """What is inside <body>."""
    return squeeze(html.split("<body>", 1)[1].split("</body>", 1)[0])


# tests/test_template_message.py


def test_simple(tmp_path: Path) -> None:
    letter = one(tmp_path, """\
        TO: to@example.com
        SUBJECT: Testing mailmerge
        FROM: from@example.com

        Hello {{name}}!
    """, {"name": "world"})  # fmt: skip
    assert letter.sender == "from@example.com"
    assert letter.recipients == ["to@example.com"]
    assert "Hello world!" in letter.text()


def test_no_substitutions(tmp_path: Path) -> None:
    letter = one(tmp_path, """\
        TO: to@example.com
        SUBJECT: Testing mailmerge
        FROM: from@example.com

        Hello world!
    """)  # fmt: skip
    assert (letter.sender, letter.recipients) == ("from@example.com", ["to@example.com"])
    assert "Hello world!" in letter.text()


def test_multiple_substitutions(tmp_path: Path) -> None:
    letter = one(tmp_path, """\
        TO: {{email}}
        FROM: from@example.com

        Hi, {{name}},

        Your number is {{number}}.
    """, {"email": "myself@example.org", "name": "Myself", "number": "17"})  # fmt: skip
    assert (letter.sender, letter.recipients) == ("from@example.com", ["myself@example.org"])
    assert "Hi, Myself," in letter.text()
    assert "Your number is 17" in letter.text()
    # No Subject, as mailmerge allows: sent without one, with a warning at validate.
    assert "Subject" not in letter.message
    assert letter.warnings == [
        "mailmerge_template.txt: no Subject header; the letters go without a subject"
    ]


def test_bad_jinja(tmp_path: Path) -> None:
    problems = refused(tmp_path, "TO: {{error_not_in_database}}", {"name": "Bob", "number": "17"})
    assert "(TO): uses {{ error_not_in_database }}, which is not a column" in problems


def test_cc_bcc(tmp_path: Path) -> None:
    letter = one(tmp_path, """\
        TO: {{email}}
        SUBJECT: Testing mailmerge
        FROM: My Self <myself@example.org>
        CC: My Colleague <mycolleague@example.org>
        BCC: Secret <secret@example.org>

        Hello world
    """, {"email": "myself@example.org"})  # fmt: skip
    assert letter.sender == "myself@example.org"
    assert str(letter.message["From"]) == "My Self <myself@example.org>"
    assert letter.recipients == ["myself@example.org", "mycolleague@example.org", "secret@example.org"]
    data = letter.message.as_string()
    assert "BCC" not in data.upper().replace("\n", " ").split("\n\n")[0]
    assert "secret@example.org" not in data
    assert "Secret" not in data


def test_html(tmp_path: Path) -> None:
    letter = one(tmp_path, """\
        TO: to@example.com
        SUBJECT: Testing mailmerge
        FROM: from@example.com
        Content-Type: text/html

        <html>
          <body>
            <p>{{message}}</p>
          </body>
        </html>
    """, {"message": "Hello world"})  # fmt: skip
    assert (letter.sender, letter.recipients) == ("from@example.com", ["to@example.com"])
    assert not letter.message.is_multipart()
    assert letter.message.get_content_type() == "text/html"
    # mailaction says utf-8 where mailmerge says us-ascii for ASCII text: both read the same.
    assert squeeze(letter.html()) == "<html><body><p>Hello world</p></body></html>"


MULTIPART_TEMPLATE = """\
    TO: to@example.com
    SUBJECT: Testing mailmerge
    FROM: from@example.com
    MIME-Version: 1.0
    Content-Type: multipart/alternative; boundary="boundary"

    This is a MIME-encoded message. If you are seeing this, your mail
    reader is old.

    --boundary
    Content-Type: text/plain; charset={charset}

    {text}

    --boundary
    Content-Type: text/html; charset={charset}

    <html>
      <body>
        <p>{text}</p>
      </body>
    </html>
"""


def check_written_alternatives(letter: Merged, text: str) -> None:
    assert (letter.sender, letter.recipients) == ("from@example.com", ["to@example.com"])
    assert letter.message.get_content_type() == "multipart/alternative"
    parts = list(letter.message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    assert letter.text().strip() == text
    assert re.sub(r"\s+", "", letter.html()) == f"<html><body><p>{text.replace(' ', '')}</p></body></html>"


def test_html_plaintext(tmp_path: Path) -> None:
    template = MULTIPART_TEMPLATE.format(charset="us-ascii", text="{{message}}")
    check_written_alternatives(one(tmp_path, template, {"message": "Hello world"}), "Hello world")


MARKDOWN_TEMPLATE = """\
    TO: {{email}}
    SUBJECT: Testing mailmerge
    FROM: Bob <bob@example.net>
    CONTENT-TYPE: text/markdown

    Hi, **{{name}}**,

    You can add:

    - Emphasis, aka italics, with *asterisks* or _underscores_.
    - Strong emphasis, aka bold, with **asterisks** or __underscores__.
    - Combined emphasis with **asterisks and _underscores_**.
    - Strikethrough uses two tildes. ~~Scratch this.~~
    - Unordered lists like this one.
    - Ordered lists with numbers:
        1. Item 1
        2. Item 2
    - Preformatted text with `backticks`.

    ---

    # This is a heading.
    ## And another heading.
    How about some [hyperlinks](http://example.org/eecs485)?

    Or code blocks?

    ```
    print("Hello world.")
    ```

    Here's an image not attached with the email:
    ![python logo not attached](
        http://example.org/python-logo.png)
"""


def test_markdown(tmp_path: Path) -> None:
    letter = one(tmp_path, MARKDOWN_TEMPLATE, {"email": "myself@example.org", "name": "Myself"})
    assert (letter.sender, letter.recipients) == ("bob@example.net", ["myself@example.org"])
    # mailmerge wraps the alternatives in multipart/related even without images; mailaction
    # sends multipart/alternative, which every reader shows the same way.
    assert letter.message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in letter.message.iter_parts()] == ["text/plain", "text/html"]
    text = letter.text()
    assert text.startswith("Hi, **Myself**,\n")
    expected = squeeze(markdown.markdown(text, extensions=["nl2br"]))
    html = body_html(letter.html())
    # The same HTML as mailmerge's conversion, except the fenced code block, which mailaction's
    # markdown (with the "extra" extension) shows as a code block instead of inline code.
    fenced_mailmerge = '<p><code>print("Hello world.")</code></p>'
    fenced_mailaction = '<pre><code>print("Hello world.")</code></pre>'
    assert fenced_mailmerge in expected.replace("&quot;", '"')
    assert fenced_mailaction in html.replace("&quot;", '"')
    assert html.replace("&quot;", '"').replace(fenced_mailaction, "") == (
        expected.replace("&quot;", '"').replace(fenced_mailmerge, "")
    )


def test_markdown_encoding(tmp_path: Path) -> None:
    letter = one(tmp_path, """\
        TO: {{email}}
        SUBJECT: Testing mailmerge
        FROM: test@example.com
        CONTENT-TYPE: text/markdown

        Hi, {{name}},
        æøå
    """, {"email": "myself@example.org", "name": "Myself"})  # fmt: skip
    parts = list(letter.message.iter_parts())
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    assert letter.text() == "Hi, Myself,\næøå\n"
    assert body_html(letter.html()) == "<p>Hi, Myself,<br />æøå</p>"


def write_attachment(folder: Path, name: str = "attachment.txt") -> Path:
    path = folder / name
    path.write_text("Hello world\n", encoding="utf-8")
    return path


SIMPLE_ATTACHMENT = """\
    TO: to@example.com
    FROM: from@example.com
    ATTACHMENT: {path}

    Hello world
"""


def test_attachment_simple(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_attachment(tmp_path)
    monkeypatch.chdir(tmp_path)
    letter = one(tmp_path, SIMPLE_ATTACHMENT.format(path="attachment.txt"))
    assert (letter.sender, letter.recipients) == ("from@example.com", ["to@example.com"])
    assert letter.message.is_multipart()
    assert [item[:2] for item in letter.attachments()] == [("attachment.txt", b"Hello world\n")]


def test_attachment_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "campaign").mkdir()
    write_attachment(tmp_path / "campaign")
    monkeypatch.chdir(tmp_path)  # not the template's folder
    letter = one(tmp_path / "campaign", SIMPLE_ATTACHMENT.format(path="attachment.txt"))
    assert [item[:2] for item in letter.attachments()] == [("attachment.txt", b"Hello world\n")]


def test_attachment_absolute(tmp_path: Path) -> None:
    (tmp_path / "attachments").mkdir()
    path = write_attachment(tmp_path / "attachments")
    letter = one(tmp_path, SIMPLE_ATTACHMENT.format(path=path))
    assert [item[:2] for item in letter.attachments()] == [("attachment.txt", b"Hello world\n")]


def test_attachment_template(tmp_path: Path) -> None:
    (tmp_path / "attachments").mkdir()
    path = write_attachment(tmp_path / "attachments")
    template = SIMPLE_ATTACHMENT.format(path="{{filename}}")
    # Different on purpose: a path from the contact list may not be absolute (mailmerge
    # attaches it). A relative one inside the template's folder is attached.
    problems = refused(tmp_path, template, {"filename": str(path)})
    assert "comes from the contact list and is an absolute path" in problems
    letter = one(tmp_path, template, {"filename": "attachments/attachment.txt"})
    assert [item[:2] for item in letter.attachments()] == [("attachment.txt", b"Hello world\n")]


def test_attachment_not_found(tmp_path: Path) -> None:
    problems = refused(tmp_path, SIMPLE_ATTACHMENT.format(path="attachment.txt"))
    assert f"attachment 'attachment.txt' not found (looked for {tmp_path / 'attachment.txt'})" in problems


def test_attachment_blank(tmp_path: Path) -> None:
    problems = refused(tmp_path, SIMPLE_ATTACHMENT.format(path=""))
    assert "the Attachment header is empty" in problems


def test_attachment_tilde_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    problems = refused(tmp_path, SIMPLE_ATTACHMENT.format(path="~/attachment.txt"))
    assert str(Path.home() / "attachment.txt") in problems
    (tmp_path / "home").mkdir()
    write_attachment(tmp_path / "home")
    letter = one(tmp_path, SIMPLE_ATTACHMENT.format(path="~/attachment.txt"))
    assert [item[:2] for item in letter.attachments()] == [("attachment.txt", b"Hello world\n")]


def test_attachment_multiple(tmp_path: Path) -> None:
    (tmp_path / "attachment_1.txt").write_text("Test Send Attachment 1\n", encoding="utf-8")
    (tmp_path / "attachment_2.pdf").write_bytes(PDF)
    (tmp_path / "attachment_17.txt").write_text("Test Send Attachment 17\n", encoding="utf-8")
    letter = one(tmp_path, """\
        TO: {{email}}
        SUBJECT: Testing mailmerge
        FROM: My Self <myself@example.org>
        ATTACHMENT: attachment_1.txt
        ATTACHMENT: attachment_2.pdf
        ATTACHMENT: attachment_{{number}}.txt

        Hi, {{name}},

        Your number is {{number}}.
    """, {"email": "myself@example.org", "name": "Myself", "number": "17"})  # fmt: skip
    assert (letter.sender, letter.recipients) == ("myself@example.org", ["myself@example.org"])
    assert letter.text().rstrip() == "Hi, Myself,\n\nYour number is 17."
    assert [item[:2] for item in letter.attachments()] == [
        ("attachment_1.txt", b"Test Send Attachment 1\n"),
        ("attachment_2.pdf", PDF),
        ("attachment_17.txt", b"Test Send Attachment 17\n"),
    ]


def test_attachment_empty(tmp_path: Path) -> None:
    assert "the Attachment header is empty" in refused(tmp_path, """\
        TO: to@example.com
        SUBJECT: Testing mailmerge
        FROM: from@example.com
        ATTACHMENT:

        Hello world
    """)  # fmt: skip


def test_contenttype_attachment_html_body(tmp_path: Path) -> None:
    write_attachment(tmp_path)
    letter = one(tmp_path, """\
        TO: to@example.com
        FROM: from@example.com
        ATTACHMENT: attachment.txt
        CONTENT-TYPE: text/html

        Hello world
    """)  # fmt: skip
    parts = list(letter.message.iter_parts())
    assert len(parts) == 2
    assert parts[0].get_content_type() == "text/html"


def test_contenttype_attachment_markdown_body(tmp_path: Path) -> None:
    write_attachment(tmp_path)
    letter = one(tmp_path, """\
        TO: to@example.com
        FROM: from@example.com
        ATTACHMENT: attachment.txt
        CONTENT-TYPE: text/markdown

        Hello **world**
    """)  # fmt: skip
    parts = list(letter.message.iter_parts())
    assert len(parts) == 2
    alternatives = list(parts[0].iter_parts())
    assert [part.get_content_type() for part in alternatives] == ["text/plain", "text/html"]


def test_duplicate_headers_attachment(tmp_path: Path) -> None:
    write_attachment(tmp_path)
    template = """\
        TO: to@example.com
        SUBJECT: Testing mailmerge
        FROM: from@example.com>
        ATTACHMENT: attachment.txt

        {{message}}
    """
    # Different on purpose: "from@example.com>" is refused (mailmerge sends it as written).
    assert "(FROM): 'from@example.com>' is not a valid address" in refused(
        tmp_path, template, {"message": "Hello world"}
    )
    letter = one(tmp_path, template.replace(".com>", ".com"), {"message": "Hello world"})
    keys = [key.lower() for key in letter.message]
    assert len(keys) == len(set(keys))


def test_duplicate_headers_markdown(tmp_path: Path) -> None:
    letter = one(tmp_path, """\
        TO: to@example.com
        SUBJECT: Testing mailmerge
        FROM: from@example.com
        CONTENT-TYPE: text/markdown

        ```
        Message as code block: {{message}}
        ```
    """, {"message": "hello world"})  # fmt: skip
    keys = [key.lower() for key in letter.message]
    assert len(keys) == len(set(keys))


def test_attachment_image_in_markdown(tmp_path: Path) -> None:
    (tmp_path / "attachment_3.jpg").write_bytes(JPEG)
    letter = one(tmp_path, """\
        TO: {{email}}
        SUBJECT: Testing mailmerge
        FROM: My Self <myself@example.org>
        ATTACHMENT: attachment_3.jpg
        CONTENT-TYPE: text/markdown

        ![](./attachment_3.jpg)
    """, {"email": "myself@example.org"})  # fmt: skip
    assert (letter.sender, letter.recipients) == ("myself@example.org", ["myself@example.org"])
    assert letter.message.get_content_type() == "multipart/related"
    assert letter.text().strip() == "![](./attachment_3.jpg)"
    ((filename, content, content_id),) = letter.attachments()
    assert (filename, content) == ("attachment_3.jpg", JPEG)
    assert content_id is not None
    assert body_html(letter.html()) == f'<p><img alt="" src="cid:{content_id[1:-1]}" /></p>'


def test_content_id_header_for_attachments(tmp_path: Path) -> None:
    write_attachment(tmp_path)
    letter = one(tmp_path, SIMPLE_ATTACHMENT.format(path="attachment.txt"))
    # Different on purpose: only attachments the HTML shows get a Content-ID (mailmerge gives
    # every attachment one); a Content-ID nothing refers to serves no reader.
    assert letter.attachments() == [("attachment.txt", b"Hello world\n", None)]


# tests/test_template_message_encodings.py


TAGELIED = """\
    From the Tagelied of Wolfram von Eschenbach (Middle High German):

    Sîne klâwen durh die wolken sint geslagen,
    er stîget ûf mit grôzer kraft,
    ich sih in grâwen tägelîch als er wil tagen,
    den tac, der im geselleschaft
    erwenden wil, dem werden man,
    den ich mit sorgen în verliez.
    ich bringe in hinnen, ob ich kan.
    sîn vil manegiu tugent michz leisten hiez.

    http://example.org/~fdc/utf8/
"""


def test_utf8_template(tmp_path: Path) -> None:
    letter = one(tmp_path, "TO: to@example.com\nSUBJECT: Testing mailmerge\nFROM: from@example.com\n\n"
                 + textwrap.dedent(TAGELIED), {"email": "myself@example.org"})  # fmt: skip
    assert letter.message.get_content_type() == "text/plain"
    assert letter.message.get_content_charset() == "utf-8"
    assert (letter.sender, letter.recipients) == ("from@example.com", ["to@example.com"])
    assert letter.text() == textwrap.dedent(TAGELIED)


def test_utf8_database(tmp_path: Path) -> None:
    letter = one(tmp_path, "TO: to@example.com\nFROM: from@example.com\n\nHi {{name}}\n", {"name": "Laȝamon"})
    assert letter.message.get_content_type() == "text/plain"
    assert letter.message.get_content_charset() == "utf-8"
    assert letter.text() == "Hi Laȝamon\n"


def test_utf8_to(tmp_path: Path) -> None:
    letter = one(tmp_path, "TO: Laȝamon <to@example.com>\nFROM: from@example.com\n\n{{message}}\n",
                 {"message": "hello"})  # fmt: skip
    assert letter.recipients == ["to@example.com"]
    assert str(letter.message["to"]) == "Laȝamon <to@example.com>"


def test_utf8_from(tmp_path: Path) -> None:
    letter = one(tmp_path, "TO: to@example.com\nFROM: Laȝamon <from@example.com>\n\n{{message}}\n",
                 {"message": "hello"})  # fmt: skip
    assert letter.sender == "from@example.com"
    assert str(letter.message["from"]) == "Laȝamon <from@example.com>"


def test_utf8_subject(tmp_path: Path) -> None:
    letter = one(tmp_path, "TO: to@example.com\nFROM: from@example.com\nSUBJECT: Laȝamon\n\n{{message}}\n",
                 {"message": "hello"})  # fmt: skip
    assert str(letter.message["subject"]) == "Laȝamon"


def test_emoji(tmp_path: Path) -> None:
    letter = one(tmp_path, "TO: test@example.com\nSUBJECT: Testing mailmerge\nFROM: test@example.com\n\nHi 😀\n")
    assert letter.message.get_content_charset() == "utf-8"
    # mailmerge says base64; mailaction picks base64 or quoted-printable, whichever is shorter.
    assert letter.message["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
    assert letter.text() == "Hi 😀\n"


def test_emoji_markdown(tmp_path: Path) -> None:
    letter = one(tmp_path, """\
        TO: test@example.com
        SUBJECT: Testing mailmerge
        FROM: test@example.com
        CONTENT-TYPE: text/markdown

        ```
        emoji_string = 😀
        ```
    """)  # fmt: skip
    parts = list(letter.message.iter_parts())
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    assert letter.text() == "```\nemoji_string = \U0001f600\n```\n"
    # A fenced block is a code block here, inline code in mailmerge (see test_markdown).
    assert body_html(letter.html()) == "<pre><code>emoji_string = \U0001f600</code></pre>"


def test_emoji_database(tmp_path: Path) -> None:
    letter = one(tmp_path, "TO: test@example.com\nSUBJECT: Testing mailmerge\nFROM: test@example.com\n\n"
                 "Hi {{emoji}}\n", {"emoji": "😀"})  # fmt: skip
    assert letter.message.get_content_charset() == "utf-8"
    assert letter.text() == "Hi 😀\n"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("Hello world", ""),  # test_encoding_us_ascii
        ("Hello Laȝamon", ""),  # test_encoding_utf8
        ("Hello L'Haÿ-les-Roses", ""),  # test_encoding_is8859_1
        ("Hello Laȝamon", 'Content-Type: text/plain; charset="us-ascii"\n'),  # test_encoding_mismatch
    ],
)
def test_encoding(tmp_path: Path, body: str, content_type: str) -> None:
    letter = one(tmp_path, f"TO: to@example.com\nFROM: from@example.com\n{content_type}\n{body}\n")
    # mailaction labels every text part utf-8 (mailmerge: us-ascii when the text is ASCII).
    assert letter.message.get_content_charset() == "utf-8"
    assert letter.text() == f"{body}\n"


@pytest.mark.parametrize("charset", ["utf-8", "us-ascii"])  # test_encoding_multipart(_mismatch)
def test_encoding_multipart(tmp_path: Path, charset: str) -> None:
    template = MULTIPART_TEMPLATE.format(charset=charset, text="Hello Laȝamon").replace(
        "    SUBJECT: Testing mailmerge\n", ""
    )
    check_written_alternatives(one(tmp_path, template), "Hello Laȝamon")


# tests/test_database.py


DATABASE_TEMPLATE = """\
    TO: {{email}}
    FROM: My Self <myself@example.org>

    Hello {{name}}
"""


@pytest.mark.parametrize(
    "database",
    [
        "\ufeffname,email\nMy Name,to@example.com\n",  # test_database_bom
        "email\tname\nto@example.com\tMy Name\n",  # test_database_tsv
        "email;name\nto@example.com;My Name\n",  # test_database_semicolon
    ],
)
def test_database_formats(tmp_path: Path, database: str) -> None:
    (letter,) = merge(tmp_path, DATABASE_TEMPLATE, database=database)
    assert letter.problems == []
    assert letter.recipients == ["to@example.com"]
    assert str(letter.message["To"]) == "to@example.com"
    assert str(letter.message["From"]) == "My Self <myself@example.org>"
    assert letter.text() == "Hello My Name\n"


def test_database_header_whitespace(tmp_path: Path) -> None:
    # Different: mailaction trims the header, so "name " is the column name (mailmerge warns
    # and then stops at the undefined variable).
    (letter,) = merge(tmp_path, DATABASE_TEMPLATE, database="email,name \nto@example.com,My Name\n")
    assert letter.problems == []
    assert letter.text() == "Hello My Name\n"


def test_database_not_found(tmp_path: Path) -> None:
    (tmp_path / "mailmerge_template.txt").write_text(textwrap.dedent(DATABASE_TEMPLATE), encoding="utf-8")
    config = Config(campaign=CampaignConfig(
        template=tmp_path / "mailmerge_template.txt", contacts=tmp_path / "notfound.csv"
    ))  # fmt: skip
    with pytest.raises(ContactsError, match="notfound.csv"):
        Campaign(config)
