"""Joins contacts, template, validation and message building into one stream of letters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from itertools import islice

from .config import CampaignConfig, Config
from .contacts import Contact, ContactList, DuplicateFinder
from .errors import ConfigError, ContactsError, Problem
from .keys import contact_key
from .message import Letter, LetterBuilder, prepare_letter
from .parallel import ordered_map, pool_size
from .template import LetterTemplate, column_aliases
from .unsubscribe import UnsubscribeHeaders
from .validate import LetterRules


@dataclass(frozen=True)
class PreparedRow:
    """One contact's letter, or the problems that stop it."""

    row: int
    contact_id: str
    letter: Letter | None
    problems: list[Problem]


@dataclass
class ValidationResult:
    """What `validate` found: letters ready, rows with problems, and the first problems.

    A problem of the template rather than of a row (``row`` None, such as a variable that is
    no column) is kept once, with the number of rows it concerns.
    """

    ready: int = 0
    invalid_rows: int = 0
    problem_count: int = 0
    keep: int = 100
    row_problems: list[Problem] = field(default_factory=list)  # the first ``keep``
    template_problems: dict[Problem, int] = field(default_factory=dict)  # -> rows it concerns

    @property
    def problems(self) -> list[Problem]:
        """The template's problems, each once with its count of rows, then the rows' problems."""
        rows = self.ready + self.invalid_rows
        return [
            _with_rows(problem, count, rows) for problem, count in self.template_problems.items()
        ] + self.row_problems

    def add(self, prepared: PreparedRow) -> None:
        """Count one row; keep its problems while there is room."""
        if not prepared.problems:
            self.ready += 1
            return
        self.invalid_rows += 1
        for problem in prepared.problems:
            if problem.row is None:
                seen = self.template_problems.setdefault(problem, 0)
                self.template_problems[problem] = seen + 1
                self.problem_count += not seen
            else:
                self.problem_count += 1
                if len(self.row_problems) < self.keep:
                    self.row_problems.append(problem)


def _with_rows(problem: Problem, count: int, rows: int) -> Problem:
    """``problem`` saying how many rows it concerns, after its first clause."""
    if rows == 1:
        concerned = "the only row"
    elif count == rows:
        concerned = f"all {rows:,} rows"
    else:
        concerned = f"{count:,} of {rows:,} rows"
    head, semicolon, rest = problem.message.partition("; ")
    return replace(problem, message=f"{head} ({concerned}){semicolon}{rest}")


_Identified = tuple[Contact, str, list[Problem]]  # a contact, its id, problems of the id

# Contact files this large (some 800 rows of 80 bytes) are checked and built in worker processes.
# Forked workers start in milliseconds: at 1,000 rows two of them already save a little on 2
# cores (0.86 s against 0.88 s for the whole `send`), at 5,000 rows 0.18 s. The size is known
# before the first row is read, so the workers start at once, while rows are read.
PARALLEL_FROM = 64 * 1024  # bytes
CHUNK_ROWS = 500  # contacts sent to a worker at a time


class LetterChecks:
    """Renders, checks and builds one contact's letter; made alike in each worker process."""

    def __init__(self, settings: CampaignConfig, key: str) -> None:
        assert settings.template is not None
        self.template = LetterTemplate.from_file(settings.template)
        self.rules = LetterRules(
            settings.max_message_size, settings.check_deliverability, settings.attachments
        )
        self.builder = LetterBuilder(key, self.template.base_dir, settings.attachments)
        self.unsubscribe = UnsubscribeHeaders(settings)
        # Headers written without template syntax read the same in every row: a problem in one
        # (an attachment not found, a bad fixed To) is the template's, at the header's line.
        lines: dict[str, list[int]] = {}
        for part in self.template.headers:
            lines.setdefault(part.name.lower(), []).append(part.line if part.constant is not None else 0)
        name = self.template.path.name
        self._fixed = {key: f"{name}:{found[0]}" for key, found in lines.items() if all(found)}

    def prepare(self, contact: Contact, contact_id: str) -> tuple[Letter | None, list[Problem]]:
        """The contact's checked Letter, or None and every problem found in it."""
        rendered = self.unsubscribe.add_to(self.template.render(contact), contact)
        letter, problems = prepare_letter(rendered, contact, contact_id, self.builder, self.rules)
        fixed = self._fixed
        return letter, [
            replace(p, source=fixed[p.field.lower()], row=None) if p.field.lower() in fixed else p
            for p in problems
        ]


class Campaign:
    """A letter template and a contact list, ready to be validated, previewed or sent."""

    def __init__(self, config: Config, *, key: str | None = None) -> None:
        settings = config.campaign
        if settings.template is None:
            raise ConfigError("no letter template: set campaign.template in the config or pass --template")
        if settings.contacts is None:
            raise ConfigError("no contact list: set campaign.contacts in the config or pass --contacts")
        self.config = config
        self.key = key or settings.name
        self.checks = LetterChecks(settings, self.key)
        self.template = self.checks.template
        self.rules = self.checks.rules
        self.builder = self.checks.builder
        self.contacts = ContactList(
            settings.contacts, sheet=settings.contacts_sheet,
            header_row=settings.contacts_header_row, id_column=settings.id_column,
        )  # fmt: skip
        self.id_column = _id_column(settings.id_column, self.contacts)

    def rows(self, workers: int | None = None) -> Iterator[PreparedRow]:
        """Every contact in spreadsheet order, rendered, checked and (when valid) built.

        ``workers``: None builds the letters of contact files of PARALLEL_FROM bytes or more in
        worker processes, one per core (see `pool_size`; this process reads the contacts and, for
        `send`, writes the queue meanwhile); 0 builds every letter here; 1 or more uses that many
        workers. Letters that carry attachments are always built here: each would cross from a
        worker whole, attachment and all.
        """
        count = self._workers(workers)
        if count >= 1 and not self.template.attaches:
            yield from self._in_workers(count, build=True)
            return
        for contact, contact_id, problems in self._identified():
            yield self._prepared(contact, contact_id, problems)

    def validate(self, keep: int = 100, workers: int | None = None) -> ValidationResult:
        """Check every row; keep the first ``keep`` problems and count the rest.

        ``workers``: None checks contact files of PARALLEL_FROM bytes or more in worker
        processes, one per core (see `pool_size`); under 2 checks every row here; 2 or more uses
        that many workers. The result is the same either way. On macOS, where workers are
        spawned, a script that calls this needs an ``if __name__ == "__main__":`` guard, since
        they import the main module.
        """
        result = ValidationResult(keep=keep)
        count = self._workers(workers)
        for prepared in self._in_workers(count, build=False) if count >= 2 else self.rows(0):
            result.add(prepared)
        return result

    def _workers(self, workers: int | None) -> int:
        """The worker processes to use: ``workers``, or by the contact file's size when None."""
        if workers is not None:
            return workers
        large = self.contacts.path.stat().st_size >= PARALLEL_FROM
        return pool_size() if large else 0

    def letters(self) -> Iterator[Letter]:
        """The valid letters only, in order."""
        for prepared in self.rows():
            if prepared.letter is not None:
                yield prepared.letter

    def _identified(self) -> Iterator[_Identified]:
        """Every contact in spreadsheet order, its id, and the id's problems (empty, duplicate).

        ContactsError at the end when the list holds no contact at all.
        """
        duplicates = DuplicateFinder(self.id_column, self.contacts.source)
        contact = None
        for contact in self.contacts:
            contact_id = contact_key(contact.get(self.id_column))
            problems: list[Problem] = []
            if not contact_id:
                problems.append(
                    Problem(contact.source, contact.row, self.id_column, "empty; every contact needs one")
                )
            duplicate = duplicates.check(contact)
            if duplicate is not None:
                problems.append(duplicate)
            yield contact, contact_id, problems
        if contact is None:
            raise ContactsError(f"{self.contacts.source}: no contacts below the header row")

    def _prepared(self, contact: Contact, contact_id: str, problems: list[Problem]) -> PreparedRow:
        letter, letter_problems = self.checks.prepare(contact, contact_id)
        problems.extend(letter_problems)
        return PreparedRow(contact.row, contact_id, None if problems else letter, problems)

    def _in_workers(self, workers: int, *, build: bool) -> Iterator[PreparedRow]:
        """Every row, its letter checked (and with ``build``, kept) by worker processes."""
        initargs = (self.config.campaign, self.key, self.id_column, self.contacts.source)
        done = ordered_map(
            _prepare_chunk, _chunks(self._identified(), build), workers=workers,
            initializer=_start_worker, initargs=initargs,
        )  # fmt: skip
        with closing(done):
            for identities, prepared in done:
                found = {index: (letter, problems) for index, letter, problems in prepared}
                for index, (row, contact_id, problems) in enumerate(identities):
                    letter, letter_problems = found.get(index, (None, []))
                    problems.extend(letter_problems)
                    yield PreparedRow(row, contact_id, None if problems else letter, problems)


_Kept = tuple[int, str, list[Problem]]  # row, contact id, problems of the id: kept in this process
# The contacts (row, values) a worker checks, and whether it hands back the letters it builds.
_Sent = tuple[list[tuple[int, dict[str, str]]], bool]
# What a worker hands back for a contact: its position in the chunk, its letter, its problems.
_Done = tuple[int, Letter | None, list[Problem]]


def _chunks(identified: Iterator[_Identified], build: bool) -> Iterator[tuple[list[_Kept], _Sent]]:
    """CHUNK_ROWS contacts at a time: what the main process keeps, and what a worker checks."""
    while True:
        kept: list[_Kept] = []
        sent: list[tuple[int, dict[str, str]]] = []
        for contact, contact_id, problems in islice(identified, CHUNK_ROWS):
            kept.append((contact.row, contact_id, problems))
            sent.append((contact.row, contact.values))
        if not kept:
            return
        yield kept, (sent, build)


_worker: tuple[LetterChecks, str, str] | None = None  # in a worker: checks, id column, source


def _id_column(name: str, contacts: ContactList) -> str:
    """The column named ``name``, or the one whose alias it is ("Email" for email)."""
    columns = tuple(contacts.columns)
    if name in columns:
        return name
    for alias, column in column_aliases(columns):
        if alias == name:
            return column
    raise ContactsError(
        f"{contacts.source}: no column {name!r} to identify contacts "
        f"(columns: {', '.join(columns)}); set campaign.id_column"
    )


def _start_worker(settings: CampaignConfig, key: str, id_column: str, source: str) -> None:
    """Make the template, rules and builder once in a worker process."""
    global _worker
    _worker = (LetterChecks(settings, key), id_column, source)


def _prepare_chunk(chunk: _Sent) -> list[_Done]:
    """Each contact's letter (when ``build``) and problems; without ``build``, only the contacts
    whose letters have problems are handed back, without letters."""
    assert _worker is not None, "_start_worker runs first in every worker"
    checks, id_column, source = _worker
    contacts, build = chunk
    done = []
    for index, (row, values) in enumerate(contacts):
        contact = Contact(row, values, source)
        letter, problems = checks.prepare(contact, contact_key(contact.get(id_column)))
        if build or problems:
            done.append((index, letter if build else None, problems))
    return done
