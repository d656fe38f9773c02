"""Joins contacts, template, validation and message building into one stream of letters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .config import Config
from .contacts import ContactList, DuplicateFinder
from .errors import ConfigError, ContactsError, Problem
from .message import Letter, LetterBuilder
from .template import LetterTemplate
from .validate import LetterRules, prepare_letter


@dataclass(frozen=True)
class PreparedRow:
    """One contact's letter, or the problems that stop it."""

    row: int
    contact_id: str
    letter: Letter | None
    problems: list[Problem]


@dataclass
class ValidationResult:
    """What `validate` found: letters ready, rows with problems, and the first problems."""

    ready: int = 0
    invalid_rows: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    keep: int = 100

    def add(self, prepared: PreparedRow) -> None:
        """Count one row; keep its problems while there is room."""
        if not prepared.problems:
            self.ready += 1
            return
        self.invalid_rows += 1
        self.problem_count += len(prepared.problems)
        room = max(self.keep - len(self.problems), 0)
        self.problems.extend(prepared.problems[:room])


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
        self.id_column = settings.id_column
        self.template = LetterTemplate.from_file(settings.template)
        self.contacts = ContactList(settings.contacts)
        if self.id_column not in self.contacts.columns:
            raise ContactsError(
                f"{self.contacts.source}: no column {self.id_column!r} to identify contacts "
                f"(columns: {', '.join(self.contacts.columns)}); set campaign.id_column"
            )
        self.rules = LetterRules(settings.max_message_size, settings.check_deliverability)
        self.builder = LetterBuilder(self.key, self.template.base_dir)

    def rows(self) -> Iterator[PreparedRow]:
        """Every contact in spreadsheet order, rendered, checked and (when valid) built."""
        duplicates = DuplicateFinder(self.id_column, self.contacts.source)
        for contact in self.contacts:
            contact_id = contact.get(self.id_column)
            problems: list[Problem] = []
            if not contact_id:
                problems.append(
                    Problem(contact.source, contact.row, self.id_column, "empty; every contact needs one")
                )
            duplicate = duplicates.check(contact)
            if duplicate is not None:
                problems.append(duplicate)
            rendered = self.template.render(contact)
            letter, letter_problems = prepare_letter(
                rendered, contact, contact_id, self.builder, self.rules
            )
            problems.extend(letter_problems)
            yield PreparedRow(contact.row, contact_id, None if problems else letter, problems)

    def validate(self, keep: int = 100) -> ValidationResult:
        """Check every row; keep the first ``keep`` problems and count the rest."""
        result = ValidationResult(keep=keep)
        for prepared in self.rows():
            result.add(prepared)
        return result

    def letters(self) -> Iterator[Letter]:
        """The valid letters only, in order."""
        for prepared in self.rows():
            if prepared.letter is not None:
                yield prepared.letter
