"""The letter template: header lines, a blank line and a body, rendered per contact in a sandbox."""

from __future__ import annotations

import difflib
import email
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, Undefined
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .contacts import column_alias
from .errors import Problem, TemplateError

if TYPE_CHECKING:
    from types import TracebackType

    from .contacts import Contact

BODY = "body"
_GLOBALS = dict(ImmutableSandboxedEnvironment().globals)  # range, cycler, joiner, namespace, ...
# RFC 5322 section 3.6.8: a field name is printable US-ASCII except ":" (no spaces).
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_UNDEFINED_NAME = re.compile(r"'(.+)' is undefined")
_NEWLINE = re.compile(r"\r\n?")
_MAX_LISTED_COLUMNS = 100
_JINJA_MARKS = ("{{", "{%", "{#")  # the environment sets no line statement or comment prefix
_BODY_TYPES = {"text/markdown": "markdown", "text/html": "html"}
# Markdown syntax is ASCII punctuation (and indentation at a line start); written as numeric
# character references it shows as itself in the HTML and starts no markup.
_MARKDOWN_SYNTAX = re.compile(r"[!-/:-@\[-`{-~]|(?:^|(?<=\n))[ \t]")


@dataclass(frozen=True)
class RenderedLetter:
    """One contact's letter: rendered headers in template order, body, and rendering problems."""

    headers: list[tuple[str, str]]
    body: str  # as sent in the text part (in text/html letters: values escaped for HTML)
    problems: list[Problem]
    # Markdown and written multipart letters: the body with every printed value escaped, the
    # source of the HTML part.
    markup_body: str | None = None
    # Positions in ``headers`` of values printed by template expressions (may hold contact data).
    templated: frozenset[int] = frozenset()

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in template order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def attachments(self) -> list[tuple[str, bool]]:
        """(path as rendered, True when the template author wrote it without expressions)."""
        return [
            (value, index not in self.templated)
            for index, (key, value) in enumerate(self.headers)
            if key.lower() == "attachment"
        ]

    @property
    def kind(self) -> str:
        """The body kind from the Content-Type header: "markdown", "html" or "plain"."""
        return body_type(self.header("Content-Type") or "")


def body_type(content_type: str) -> str:
    """"markdown", "html", "multipart" (parts the template writes) or "plain" for a Content-Type."""
    media = content_type.partition(";")[0].strip().lower()
    return "multipart" if media.startswith("multipart/") else _BODY_TYPES.get(media, "plain")


def mime_parts(content_type: str, body: str) -> list[tuple[str, str]]:
    """(subtype, text) of each part a multipart body writes, as mailmerge reads them.

    ValueError saying what is wrong when the body holds no part, or a part that is not text.
    """
    message = email.message_from_string(f"Content-Type: {content_type}\n\n{body}")
    boundary = message.get_boundary()
    if boundary is None:
        raise ValueError("a multipart body needs a boundary= parameter in its Content-Type")
    parts = []
    for part in message.walk() if message.is_multipart() else ():
        if part.is_multipart():
            continue
        if part.get_content_maintype() != "text":
            raise ValueError(f"a written part is {part.get_content_type()}; parts must be text")
        text = str(part.get_payload())
        data = part.get_payload(decode=True)
        if str(part.get("Content-Transfer-Encoding", "")).lower() in ("base64", "quoted-printable"):
            assert isinstance(data, bytes)  # a leaf part decodes to bytes
            text = data.decode(part.get_content_charset() or "utf-8", "replace")
        parts.append((part.get_content_subtype(), text))
    if not parts:
        raise ValueError(f"no part starts with the boundary line '--{boundary}'")
    return parts


class Trusted(str):
    """A value the template marks as trusted markup (``{{ bio | trusted }}``): never escaped."""


def _trusted(value: object) -> Trusted:
    return Trusted(value)


def markdown_text(value: str) -> str:
    """``value`` as Markdown that shows it literally: no markup, no HTML, no links."""
    return _MARKDOWN_SYNTAX.sub(lambda match: f"&#{ord(match[0])};", value)


def _html_text(value: str) -> str:
    return html.escape(value, quote=True)


# In written multipart bodies values are escaped for HTML; their text parts keep them as they are.
_ESCAPES: dict[str, Callable[[str], str]] = {
    "markdown": markdown_text, "html": _html_text, "multipart": _html_text
}


def _finalizer(escape: Callable[[str], str]) -> Callable[[object], object]:
    """Finalize for body expressions: every printed value escaped, unless marked trusted."""

    def finalize(value: object) -> object:
        if isinstance(value, (Trusted, Undefined)):  # str() of an Undefined raises, as it should
            return value
        return escape(str(value))

    return finalize


@dataclass(frozen=True)
class _Part:
    """One header value or the body, compiled on its own."""

    name: str  # header name as written, or "body"
    template: Template
    place: str  # for messages: "the Subject header of letter.txt"
    constant: str | None  # the rendered text when the source has no Jinja syntax
    line: int  # where the part starts in the template file


class LetterTemplate:
    """A letter template, compiled once and rendered for each contact."""

    def __init__(
        self,
        headers: list[_Part],
        body: _Part,
        path: Path,
        base_dir: Path,
        escaped_bodies: dict[str, _Part] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.headers = headers
        self.body = body
        self.path = path
        self.base_dir = base_dir
        # The body compiled again per kind ("markdown", "html"), printing values escaped.
        self.escaped_bodies = escaped_bodies or {}
        self.warnings = warnings or []  # what mailmerge accepts and the author may not mean

    @property
    def attaches(self) -> bool:
        """Whether the template has an Attachment header."""
        return any(part.name.lower() == "attachment" for part in self.headers)

    @classmethod
    def from_file(cls, path: Path) -> LetterTemplate:
        """Read and compile a template file; TemplateError when missing, unreadable or invalid."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TemplateError(f"{path}: template file not found") from None
        except OSError as exc:
            raise TemplateError(f"{path}: cannot read template: {exc.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise TemplateError(
                f"{path.name}:{line}: not UTF-8 text; save the template as UTF-8"
            ) from None
        return cls._parse(text, path.name, path, path.absolute().parent)

    @classmethod
    def from_string(
        cls, text: str, name: str = "<template>", base_dir: Path | None = None
    ) -> LetterTemplate:
        """Compile template text; ``name`` is used in messages, ``base_dir`` for attachments."""
        return cls._parse(text, name, Path(name), base_dir or Path.cwd())

    @classmethod
    def _parse(cls, text: str, name: str, path: Path, base_dir: Path) -> LetterTemplate:
        """Split the header block from the body and compile every part on its own."""
        lines = _NEWLINE.sub("\n", text.removeprefix("\ufeff")).split("\n")
        # The last item follows the final newline, so it cannot be the separating blank line.
        blank = next((i for i in range(len(lines) - 1) if not lines[i].strip()), None)
        if blank is None:  # headers only, as mailmerge allows: every line must be a header
            lines = [*(lines[:-1] if not lines[-1].strip() else lines), ""]
            blank = len(lines) - 1
        env = _environment(base_dir, "")
        headers = [
            _make_part(env, field, value, name, lineno, f"the {field} header of {name}")
            for field, value, lineno in _parse_headers(lines[:blank], name)
        ]
        body_source = "\n".join(lines[blank + 1 :])
        place = f"the body of {name}"
        body = _make_part(env, BODY, body_source, name, blank + 2, place)
        # The kinds a letter can be: those fixed Content-Types name (none: plain), else any.
        content_types = [part for part in headers if part.name.lower() == "content-type"]
        kinds = set(_ESCAPES)
        if all(part.constant is not None for part in content_types):
            kinds &= {body_type(part.constant or "") for part in content_types}
        escaped = {
            kind: _make_part(_environment(base_dir, kind), BODY, body_source, name, blank + 2, place)
            for kind in kinds
        }
        warnings = []
        if not any(part.name.lower() == "subject" for part in headers):
            warnings.append(f"{name}: no Subject header; the letters go without a subject")
        if not body_source.strip():
            warnings.append(f"{name}: the body is empty; the letters have headers only")
        return cls(headers, body, path, base_dir, escaped, warnings)

    def render(self, contact: Contact) -> RenderedLetter:
        """Render every header and the body for ``contact``, collecting problems instead of raising."""
        namespace = {**_GLOBALS, **template_variables(contact)}
        problems: list[Problem] = []
        headers = [
            (part.name, self._render_part(part, namespace, contact, problems).strip(" \t"))
            for part in self.headers
        ]
        templated = frozenset(i for i, part in enumerate(self.headers) if part.constant is None)
        kind = body_type(next((v for k, v in headers if k.lower() == "content-type"), ""))
        escaped = self.escaped_bodies.get(kind)
        markup_body = None
        if kind == "html" and escaped is not None:
            body = self._render_part(escaped, namespace, contact, problems)
        else:
            body = self._render_part(self.body, namespace, contact, problems)
            if escaped is not None and escaped.constant is None and not problems:
                markup_body = self._render_part(escaped, namespace, contact, problems)
        return RenderedLetter(headers, body, problems, markup_body, templated)

    def _render_part(
        self, part: _Part, namespace: dict[str, object], contact: Contact, problems: list[Problem]
    ) -> str:
        """The rendered part, or "" with a problem added when the template fails for this contact."""
        if part.constant is not None:
            return part.constant
        template = part.template
        try:
            # One shared namespace per row instead of Template.render()'s copy per part: the
            # sandbox keeps templates from changing it, and rendering is the hot path. The context
            # is made directly: new_context() would also collect the globals, already in namespace.
            env = template.environment
            context = env.context_class(env, namespace, template.name, template.blocks)
            return "".join(template.root_render_func(context))
        except UndefinedError as exc:
            missing = _UNDEFINED_NAME.fullmatch(str(exc))
            if missing is not None:  # a name that is no column: the same in every row
                line = f"{self.path.name}:{_failed_line(exc, part)}"
                message = _not_a_column(missing.group(1), tuple(contact.values))
                problems.append(Problem(line, None, part.name, message))
                return ""
            message = f"undefined value in {part.place}: {exc} (columns: {', '.join(contact.values)})"
        except SecurityError as exc:
            message = f"template tried an unsafe operation: {exc} (in {part.place})"
        except IncludeRefused as exc:
            message = f"cannot include {exc.name!r}: {exc.message} (in {part.place})"
        except TemplateNotFound as exc:
            message = f"cannot include {exc.name!r}: no such file in the template's folder (in {part.place})"
        # The template's own expressions can raise anything ({{ 1/0 }}, {{ "a" + 1 }}); that is
        # a problem with this letter, not a crash of the program.
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {exc} (in {part.place})"
        problems.append(Problem(contact.source, contact.row, part.name, message))
        return ""


def template_variables(contact: Contact) -> dict[str, object]:
    """Every column by name, snake_case aliases for other column names, and ``contact``."""
    values = contact.values
    variables: dict[str, object] = {"contact": values}
    variables.update(values)
    for alias, column in column_aliases(tuple(values)):
        variables[alias] = values[column]
    return variables


@lru_cache(maxsize=64)
def column_aliases(columns: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(alias, column): "First Name" is also first_name, "Email" also email; never hides a real name."""
    taken = {"contact", *columns}
    aliases = []
    for column in columns:
        alias = column_alias(column)
        if alias.isidentifier() and alias not in taken:
            taken.add(alias)
            aliases.append((alias, column))
    return tuple(aliases)


def _parse_headers(lines: list[str], name: str) -> list[tuple[str, str, int]]:
    """(field name, value source, line number) for each header, continuation lines folded in."""
    headers: list[tuple[str, str, int]] = []
    for lineno, line in enumerate(lines, start=1):
        if line[:1] in (" ", "\t") and headers:
            field, value, start = headers[-1]
            headers[-1] = (field, f"{value} {line.strip()}".strip(), start)
            continue
        field, colon, value = line.partition(":")
        if not colon or line[:1] in (" ", "\t"):
            raise TemplateError(
                f"{name}:{lineno}: expected a header line like 'Subject: ...' before the blank line"
            )
        if not _FIELD_NAME.fullmatch(field):
            raise TemplateError(
                f"{name}:{lineno}: {field!r} is not a valid header name "
                "(printable ASCII without spaces, like 'Reply-To')"
            )
        headers.append((field, value.strip(), lineno))
    return headers


class IncludeRefused(TemplateNotFound):
    """An {% include %} names something other than a regular file inside the template's folder."""


class _FolderLoader(FileSystemLoader):
    """Loads included files from one folder: symlinks followed must stay inside, files only."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.folder = folder

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        path = self.folder.joinpath(*split_template_path(template))
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError):
            raise IncludeRefused(template, "the path cannot be resolved") from None
        if not real.is_relative_to(self.folder.resolve()):
            raise IncludeRefused(template, "it leads outside the template's folder")
        if real.exists() and not real.is_file():
            raise IncludeRefused(template, "not a regular file")
        return super().get_source(environment, template)


@lru_cache(maxsize=16)
def _environment(base_dir: Path, escape: str) -> ImmutableSandboxedEnvironment:
    """The sandbox templates are compiled in; {% include %} finds files in ``base_dir`` (as in
    mailmerge), never outside it. ``escape``: "markdown" or "html" escapes printed values."""
    env = ImmutableSandboxedEnvironment(
        loader=_FolderLoader(base_dir),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalizer(_ESCAPES[escape]) if escape else None,
    )
    env.filters["trusted"] = _trusted
    return env


def _make_part(
    env: ImmutableSandboxedEnvironment, field: str, source: str, name: str, first_line: int, place: str
) -> _Part:
    """One compiled part; a part without Jinja syntax is rendered once, here."""
    template = _compile_part(env, source, name, first_line)
    literal = not any(mark in source for mark in _JINJA_MARKS)
    return _Part(field, template, place, template.render() if literal else None, first_line)


def _compile_part(
    env: ImmutableSandboxedEnvironment, source: str, name: str, first_line: int
) -> Template:
    """Compile one part; syntax errors name the line in the template file."""
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        line = first_line + (exc.lineno or 1) - 1
        raise TemplateError(f"{name}:{line}: {exc.message}") from None


def _failed_line(exc: BaseException, part: _Part) -> int:
    """The line of the template file where rendering ``part`` raised ``exc``."""
    line = 1
    frame: TracebackType | None = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<template>":  # the part's compiled code
            line = part.template.get_corresponding_lineno(frame.tb_lineno)
        frame = frame.tb_next
    return part.line + line - 1


@lru_cache(maxsize=64)
def _not_a_column(name: str, columns: tuple[str, ...]) -> str:
    """Says that the template uses ``name`` and lists the columns as the header writes them."""
    spellings = [*columns, *(alias for alias, _ in column_aliases(columns))]
    guess = difflib.get_close_matches(name, spellings, n=1)
    hint = f"did you mean {{{{ {guess[0]} }}}}? The" if guess else "the"
    listed = ", ".join(columns[:_MAX_LISTED_COLUMNS])
    if len(columns) > _MAX_LISTED_COLUMNS:
        listed += f", … ({len(columns):,} in all)"
    return f"uses {{{{ {name} }}}}, which is not a column; {hint} columns are: {listed}"

