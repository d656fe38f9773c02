"""The `mailaction` command: parses options, calls the library, prints, and sets the exit code."""

from __future__ import annotations

import atexit
import functools
import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from email_validator import EmailNotValidError, validate_email
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from . import __version__
from .accounts import login_account, store_password
from .campaign import Campaign, PreparedRow
from .config import Config, find_config, load_config
from .deliverability import DeliverabilityCheck, check_campaign
from .delivery import CampaignResult, Hooks, SendOptions, SendPlan, real_campaigns, send_campaign
from .deliverylog import DeliveryLog, State, open_log
from .errors import ConfigError, ContactsError, ExitStatus, InvalidCampaign, MailactionError
from .example import DEMO_FOLDER, demo_config, reset_demo, write_example
from .mailmerge import convert_mailmerge
from .message import Letter
from .preflight import check_server_accounts, server_limited
from .preview import print_letter, write_preview
from .report import (
    letter_count,
    load_report,
    print_summary,
    print_table,
    write_csv,
    write_html,
    write_json,
)
from .sender import SendSummary
from .suppression import SuppressionList, checked_address, open_suppression
from .workers import LEASE

if TYPE_CHECKING:
    from .bounces import Mailbox
    from .sink import StoredMessage
# The local SMTP sink (aiosmtpd) and bounce reading (flufl.bounce) are imported by the
# commands that use them: 18 ms at the start of every command otherwise.

# emoji=False: ":name:" in a contact or campaign name stays as written.
console = Console(highlight=False, soft_wrap=True, emoji=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
REPORT_WRITERS = {"csv": write_csv, "json": write_json, "html": write_html}


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user-fixable errors into one line and an exit code; Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InvalidCampaign as exc:
            for problem in exc.problems:
                console.print(str(problem), markup=False)
            errors.print(f"Error: {exc}", markup=False)
            sys.exit(exc.exit_status)
        except MailactionError as exc:
            errors.print(f"Error: {exc}", markup=False)
            sys.exit(exc.exit_status)
        except OSError as exc:
            if exc.filename is None:
                raise
            # A file or folder named on the command line cannot be written (or read).
            errors.print(f"Error: {exc.filename}: {exc.strerror}", markup=False)
            sys.exit(ExitStatus.INVALID)
        except KeyboardInterrupt:
            errors.print("Interrupted.")
            sys.exit(ExitStatus.INTERRUPTED)

    return wrapper


def campaign_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --template, --contacts and --log, shared by the campaign commands."""
    options = [
        click.option(
            "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
            help="Config file. Default: ./mailaction.toml, else ./config.example.toml.",
        ),
        click.option("--template", type=click.Path(path_type=Path), help="Letter template (overrides the config)."),
        click.option("--contacts", type=click.Path(path_type=Path), help="Contact list: CSV, TSV or XLSX (overrides the config)."),
        click.option("--log", type=click.Path(path_type=Path, dir_okay=False), help="Delivery log file (overrides the config)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return handle_errors(command)


def read_config(config_path: Path | None, template: Path | None, contacts: Path | None, log: Path | None) -> Config:
    """The config file (or the default one) with command-line overrides applied."""
    path = config_path or find_config()
    if path is None and template is None and contacts is None and log is None:
        raise ConfigError(
            "no config: ./mailaction.toml not found; copy config.example.toml to mailaction.toml "
            "or pass --config (or --template and --contacts)"
        )
    overrides = {"template": template, "contacts": contacts, "log": log}
    return load_config(path, {k: v.resolve() for k, v in overrides.items() if v is not None})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mailaction")
def main() -> None:
    """Mail-merge and letter-writing campaigns.

    Keep contacts in a spreadsheet, write one letter as a template, check and preview
    every personalised letter, then send them through your own SMTP server with a
    delivery log that survives crashes.

    \b
    Start here:
      mailaction demo                 send the example campaign to a built-in test server
      mailaction validate             check every letter; nothing is sent
      mailaction preview --out DIR    look at every letter before sending
      mailaction send                 send (asks first; re-running resumes)
      mailaction report               what went out, what failed and why
    """


def run() -> None:
    """The `mailaction` command: `main` in a process of its own."""
    # The process ends with the command: what is alive then is left to the operating system,
    # not walked once more by the garbage collector (50 ms at every exit). The log, files and
    # connections are closed by then; the interpreter still flushes the standard streams.
    atexit.register(gc.freeze)
    main()


@main.command()
@campaign_options
@click.option(
    "--server", is_flag=True,
    help="Also connect to the SMTP server, secure the connection and log in (sending nothing);"
    " letters larger than the server accepts (SIZE) are problems.",
)  # fmt: skip
def validate(
    config_path: Path | None, template: Path | None, contacts: Path | None, log: Path | None,
    server: bool,
) -> None:  # fmt: skip
    """Check every contact and letter; print each problem with its row. Sends nothing.

    Exits with 2 when any row has a problem, so it can guard scripts; with --server,
    with 1 when the server cannot be used.

    \b
    Example:
      mailaction validate --config mailaction.toml
      mailaction validate --template letter.txt --contacts supporters.xlsx
      mailaction validate --server              also log in to the server, send nothing
    """
    config = read_config(config_path, template, contacts, log)
    if server:
        checks = check_server_accounts(config, functools.partial(_password, config))
        for check in checks:
            console.print(f"Server {check.describe()}", markup=False)
        limited = server_limited(config, checks)
        if limited is not config:
            console.print(
                f"The server accepts letters up to {limited.campaign.max_message_size:,} octets;"
                " larger ones are problems below.", markup=False,
            )  # fmt: skip
        config = limited
    campaign = Campaign(config)
    console.print(campaign.contacts.description, markup=False)
    for warning in campaign.template.warnings:
        console.print(f"Warning: {warning}", markup=False)
    result = campaign.validate()
    for problem in result.problems:
        console.print(str(problem), markup=False)
    if result.problem_count > len(result.problems):
        console.print(f"... and {result.problem_count - len(result.problems)} more problems.")
    checked = f"{campaign.contacts.source} with {campaign.template.path.name}"
    if result.invalid_rows:
        raise InvalidCampaign(
            f"{result.problem_count} problem(s) in {result.invalid_rows} row(s) of {checked}; "
            f"{result.ready} letter(s) ready. Fix them and run validate again; nothing was sent.", []
        )
    console.print(f"[green]✓[/] {letter_count(result.ready)} ready ({escape(checked)}). Nothing was sent.")
    _print_deliverability(check_campaign(campaign), config)


def _print_deliverability(check: DeliverabilityCheck, config: Config) -> None:
    if check.signing:
        console.print(f"DKIM: letters will be signed for {check.signing}; the key loads.", markup=False)
    for warning in check.warnings:
        errors.print(f"Warning: {warning}", markup=False)
    if check.suppressed:
        console.print(
            f"  {check.suppressed} suppressed: on the suppression list {config.campaign.suppression};"
            " they will not be sent",
            markup=False,
        )


@main.command()
@campaign_options
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Write one .eml per letter and an index.html here.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N letters (default: 3 on screen, all with --out).")
@click.option("--row", "rows", type=click.IntRange(min=2), multiple=True, help="Show the letter of this spreadsheet row (repeatable; the header is row 1).")
def preview(
    config_path: Path | None, template: Path | None, contacts: Path | None, log: Path | None,
    out: Path | None, limit: int | None, rows: tuple[int, ...],
) -> None:  # fmt: skip
    """Show personalised letters as they will be sent. Sends nothing.

    Rows are numbered as in your spreadsheet (the header is row 1).

    \b
    Example:
      mailaction preview                    the first 3 letters in the terminal
      mailaction preview --row 12           the letter for spreadsheet row 12
      mailaction preview --out preview/     every letter as .eml + preview/index.html
    """
    campaign = Campaign(read_config(config_path, template, contacts, log))
    chosen: Iterator[PreparedRow] = (p for p in campaign.rows() if not rows or p.row in rows)
    if limit is not None or (out is None and not rows):
        chosen = _first(chosen, limit or 3)
    problems = []
    shown = set()

    def checked() -> Iterator[Any]:
        for prepared in chosen:
            shown.add(prepared.row)
            problems.extend(prepared.problems)
            yield prepared

    if out is not None:
        result = write_preview(checked(), out)
        console.print(f"Wrote {letter_count(result.written)} to {out}/. Open {result.index} in a browser to read them.", markup=False)
    else:
        for prepared in checked():
            if prepared.letter is not None:
                print_letter(prepared.letter, console)
    for problem in problems:
        console.print(str(problem), markup=False)
    missing = sorted(set(rows) - shown) if limit is None else []
    if missing:
        raise ContactsError(
            f"{campaign.contacts.source}: no contact on row {', '.join(map(str, missing))} "
            "(the header is row 1; blank rows hold no contact)"
        )
    if problems:
        raise InvalidCampaign(f"{len(problems)} problem(s) in the letters shown; fix them before sending.", [])


def _first(items: Iterator[PreparedRow], count: int) -> Iterator[PreparedRow]:
    for index, item in enumerate(items):
        if index >= count:
            return
        yield item


@main.command()
@campaign_options
@click.option("--dry-run", is_flag=True, help="Do everything except talk to the SMTP server.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N letters in this run.")
@click.option("--test-to", metavar="ADDR", help="Send proof copies to ADDR instead of the real recipients (1 unless --limit).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--resend-uncertain", is_flag=True, help="Also send letters whose earlier attempt may or may not have arrived.")
@click.option("--retry-failed", is_flag=True, help="Also retry letters the server refused permanently before.")
@click.option("--workers", default="1", metavar="N|auto", callback=lambda ctx, param, value: _workers(value), help="Processes sending from the queue (auto: one per core). Default 1.")
@click.option("--lease", type=click.FloatRange(min=1), default=LEASE, show_default=True, metavar="SECONDS", help="A worker silent this long is taken for dead; its letters go to the others.")
def send(
    config_path: Path | None, template: Path | None, contacts: Path | None, log: Path | None,
    dry_run: bool, limit: int | None, test_to: str | None, yes: bool,
    resend_uncertain: bool, retry_failed: bool, workers: int, lease: float,
) -> None:  # fmt: skip
    """Validate every letter, then send them through the SMTP server of the config.

    Nothing is sent if any row has a problem. Re-running resumes: letters already
    sent are never sent again; letters that may have arrived when a run was cut
    short ("uncertain") are sent again only with --resend-uncertain.
    Ctrl-C stops after the letters in flight; a second Ctrl-C stops at once.

    \b
    Example:
      mailaction send --dry-run                 what would be sent, and to whom
      mailaction send --test-to me@example.org  one proof copy to yourself
      mailaction send --limit 100               the first 100 letters, then stop
      mailaction send --yes                     no question asked (scripts, cron)
      mailaction send --workers auto            one sending process per core
    """
    config = read_config(config_path, template, contacts, log)
    if test_to is not None:
        test_to = _check_address(test_to)
        limit = limit or 1
    options = SendOptions(dry_run, limit, test_to, resend_uncertain, retry_failed, workers, lease)
    hooks = Hooks(
        plan=functools.partial(_print_plan, config, test_to=test_to),
        confirm=functools.partial(_confirm, config=config, yes=yes),
        password=functools.partial(_password, config),
        progress=_progress,
        interrupt=_interrupted,
    )
    result = send_campaign(config, options, hooks)
    _finish(config, result, dry_run=dry_run)


def _finish(config: Config, result: CampaignResult, *, dry_run: bool) -> None:
    """The lines a run ends with, and its exit code."""
    plan = result.plan
    if result.declined:
        console.print("Nothing was sent.")
        return
    if not result.sent:
        if plan.to_send and dry_run:
            _print_sample(plan.sample)
            console.print(f"This was a dry run; nothing was sent. To send: mailaction send{_config_hint(config)}", markup=False)
        else:
            console.print("Nothing to send.")
        return
    _warn_unverified(config)
    console.print(_run_line(result.summary), markup=False)
    for account in result.accounts:
        console.print(f"  {account.describe()}", markup=False)
    with open_log(result.log_path, result.campaign, create=False) as delivery_log:
        print_summary(load_report(delivery_log), console)
    console.print(f"Full report: mailaction report{_config_hint(config)}", markup=False)
    if result.interrupted:
        errors.print("Stopped by Ctrl-C. The delivery log is consistent; run send again to resume.")
        sys.exit(ExitStatus.INTERRUPTED)
    if result.summary.stopped_reason:
        errors.print(f"Stopped: {result.summary.stopped_reason}", markup=False)
    if result.problems:
        sys.exit(ExitStatus.SOME_FAILED)


def _run_line(summary: SendSummary) -> str:
    """This run alone: letters sent and the rate, over this run's time only."""
    seconds = max(summary.finished - summary.started, 0.0)
    rate = f" ({summary.sent / seconds:,.0f} letters/s)" if seconds > 0 and summary.sent > 1 else ""
    return f"This run: {letter_count(summary.sent)} sent in {seconds:,.1f} s{rate}."


def _workers(value: str) -> int:
    """--workers: a number of processes, or "auto" (0: one per core)."""
    if value == "auto":
        return 0
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r} is not a number of workers (1, 2, ... or auto)")
    return int(value)


def _check_address(address: str) -> str:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise click.BadParameter(f"{address!r} is not a valid address: {exc}", param_hint="--test-to")


def _print_plan(config: Config, plan: SendPlan, *, test_to: str | None) -> None:
    where = _through(config)
    target = letter_count(plan.to_send)
    if test_to:
        target = f"{plan.to_send} proof cop{'y' if plan.to_send == 1 else 'ies'} to {test_to}"
    name = Text(config.campaign.name, style="bold")
    console.print(Text.assemble("Campaign ", name, f": {target} to send through {where}."))
    twins = ", ".join(f"row {row} as row {entry.row} of {entry.campaign!r}" for row, entry in plan.twins)
    notes = [
        (plan.new if plan.had_letters and not test_to else 0, "new since the last run (rows added to the list)"),
        (plan.rebuilt, "queued earlier and changed since (row or template): queued anew as they are now"),
        (plan.already_sent, "already sent; they will not be sent again"),
        (plan.recovered, "were in flight when an earlier run stopped; they are now 'uncertain'"),
        (plan.held_uncertain, "uncertain (may have arrived); not sent again without --resend-uncertain"),
        (plan.held_failed, "refused permanently before; not retried without --retry-failed"),
        (0 if test_to else plan.left_for_later, "queued for a later run (--limit or sending.daily_limit)"),
        (plan.suppressed, "suppressed: on the suppression list, so not sent"),
        (plan.withdrawn, "queued earlier but gone from the contact list; never sent, "
         + "so taken off the queue"),
        (plan.changed_after_send.count, "changed since they were sent or tried; not re-sent (rows "
         + ", ".join(map(str, plan.changed_after_send.rows)) + ")"),
        (plan.twin_count, "already sent under another id or campaign name; not sent again ("
         + twins + ")"),
    ]  # fmt: skip
    for count, text in notes:
        if count:
            console.print(f"  {count} {text}", markup=False)


def _through(config: Config) -> str:
    """The server, or the accounts, a campaign goes out through."""
    if config.accounts:
        return f"{len(config.accounts)} accounts ({', '.join(a.label for a in config.accounts)})"
    return config.smtp.address


def _print_sample(sample: list[Letter]) -> None:
    table = Table("row", "to", "subject", title="First letters")
    for letter in sample:
        table.add_row(Text(str(letter.row)), Text(", ".join(letter.recipients)), Text(letter.subject))
    console.print(table)


def _config_hint(config: Config) -> str:
    source = config.source
    if source is None or source.resolve() == (Path.cwd() / "mailaction.toml").resolve():
        return ""
    return f" --config {os.path.relpath(source)}"


def _confirm(plan: SendPlan, *, config: Config, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise click.UsageError("no terminal to ask for confirmation; pass --yes to send")
    question = f"Send {letter_count(plan.to_send)} through {_through(config)}?"
    try:
        return click.confirm(question, default=False)
    except click.Abort:  # Ctrl-D or Ctrl-C at the question
        console.print()
        return False


def _warn_unverified(config: Config) -> None:
    if config.smtp.security != "none" and not config.smtp.verify_certificates:
        errors.print(
            "Warning: smtp.verify_certificates = false: the server's certificate is not checked, so"
            " whoever sits between you and it could read the letters and the password.",
            markup=False,
        )


def _password(config: Config) -> str | None:
    smtp = config.smtp
    if not smtp.username:
        return None
    return _secret("smtp", smtp.username, smtp.password_env, smtp.host)


def _secret(section: str, username: str, password_env: str | None, host: str) -> str:
    """The password from the variable named by ``password_env``, else asked on the terminal."""
    if password_env and os.environ.get(password_env):
        return os.environ[password_env]
    service = section.upper()
    if not sys.stdin.isatty():
        hint = f"set the environment variable {password_env}" if password_env else f"set {section}.password_env"
        raise ConfigError(f"no {service} password for {username!r}: {hint} (there is no terminal to ask)")
    return str(click.prompt(f"{service} password for {username} at {host}", hide_input=True))


class RateColumn(ProgressColumn):
    """Letters per second, once there is a measure."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "")


@contextmanager
def _progress(total: int) -> Iterator[Callable[[State, int], None] | None]:
    """A progress bar with rate and ETA while letters go out; none when not a terminal (then
    nothing is counted for it)."""
    if not console.is_terminal:
        yield None
        return
    progress = Progress(
        TextColumn("[bold]Sending"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"), RateColumn(),
        TimeRemainingColumn(), console=console,
    )  # fmt: skip
    task = progress.add_task("send", total=total, failed=0)
    failed = 0

    def advance(state: State, count: int) -> None:
        nonlocal failed
        if state is not State.SENT:
            failed += count
        progress.update(task, advance=count, failed=failed)

    with progress:
        yield advance


def _interrupted(presses: int) -> None:
    message = "Stopping after the letters in flight (Ctrl-C again to stop at once)..."
    errors.print()
    errors.print(message if presses == 1 else "Stopping now.")


@main.command()
@campaign_options
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "html"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="Write to this file instead of the terminal.")
@click.option("--state", "states", type=click.Choice([s.value for s in State]), multiple=True, help="Only letters in this state (repeatable).")
def report(
    config_path: Path | None, template: Path | None, contacts: Path | None, log: Path | None,
    fmt: str, output: Path | None, states: tuple[str, ...],
) -> None:  # fmt: skip
    """Summarise the delivery log: counts per state, timing, failures with the server's reply.

    \b
    Example:
      mailaction report                                  a table in the terminal
      mailaction report --state failed --state uncertain only the letters to look at
      mailaction report --format html -o report.html     one page to share (works offline)
      mailaction report --format json                    for other tools
    """
    config = read_config(config_path, template, contacts, log)
    with _campaign_log(config) as delivery_log:
        data = load_report(delivery_log, [State(s) for s in states] or None)
        if output is None:
            if fmt == "table":
                print_table(data, console)
            else:
                REPORT_WRITERS[fmt](data, sys.stdout)
            return
        with output.open("w", encoding="utf-8", newline="" if fmt == "csv" else None) as out:
            if fmt == "table":
                print_table(data, Console(file=out, width=120, highlight=False))
            else:
                REPORT_WRITERS[fmt](data, out)
    console.print(f"Wrote {output}", markup=False)


@main.command()
@campaign_options
@click.argument("who")
def show(
    config_path: Path | None, template: Path | None, contacts: Path | None, log: Path | None, who: str,
) -> None:  # fmt: skip
    """Show what was sent to someone: the stored letter and its history.

    WHO is a spreadsheet row number, a contact id or an address. The letter is
    printed as the delivery log holds it; its Date header is set again as it
    goes out (the history says when).

    \b
    Example:
      mailaction show 12                  the letter of spreadsheet row 12
      mailaction show ann@example.org     every letter to this address
    """
    config = read_config(config_path, template, contacts, log)
    with _campaign_log(config) as delivery_log:
        entries = delivery_log.find(who)
        if not entries:
            raise ContactsError(f"{delivery_log.where}: no letter of {delivery_log.campaign!r} for {who!r}")
        for entry in entries:
            console.print(Text(f"Row {entry.row} · {', '.join(entry.recipients)} · {entry.state}", style="bold"))
            for line in delivery_log.history(entry.contact_id):
                console.print(f"  {line}", markup=False)
            message = delivery_log.message(entry.contact_id)
            if message is None:
                console.print("  (the letter's text is no longer stored: campaign.keep_letters_days)")
            else:
                console.print()
                console.print(message.decode("utf-8", "replace").replace("\r\n", "\n"), markup=False)


@contextmanager
def _campaign_log(config: Config) -> Iterator[DeliveryLog]:
    """The delivery log of the config's campaign, read only; without a config, the file's one."""
    assert config.campaign.log is not None
    with open_log(config.campaign.log, config.campaign.name, create=False) as delivery_log:
        if config.source is None:  # only --log: the campaign is the one the file holds
            delivery_log.campaign = _only_campaign(delivery_log)
        yield delivery_log


def _only_campaign(delivery_log: DeliveryLog) -> str:
    """The one campaign of a delivery log read without a config (proof runs aside)."""
    real = real_campaigns(delivery_log.campaigns())
    if len(real) > 1:
        raise ConfigError(
            f"{delivery_log.location} holds several campaigns ({', '.join(real)}); "
            "pass --config with the campaign's name"
        )
    return real[0] if real else delivery_log.campaign


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (keep it on loopback).")
@click.option("--port", default=1025, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--maildir", default="sink-maildir", show_default=True, type=click.Path(path_type=Path, file_okay=False), help="Where to store received messages.")
@handle_errors
def sink(host: str, port: int, maildir: Path) -> None:
    """Run a local SMTP server that accepts every message and stores it in a Maildir.

    For trying a campaign end to end without sending real mail. Stop it with Ctrl-C.

    \b
    Example:
      mailaction sink --port 1025 --maildir received/
      mailaction send --config config.example.toml     (in another terminal)
    """
    from .sink import Sink

    with Sink(maildir, host=host, port=port, on_message=_print_stored) as server:
        console.print(f"Listening on {host}:{server.port}; storing messages in {maildir}/ (Ctrl-C to stop)", markup=False)
        try:
            signal.pause()
        except KeyboardInterrupt:
            console.print(f"Stopped; {server.count} messages stored in {maildir}/", markup=False)


def _print_stored(message: StoredMessage) -> None:
    console.print(f"{message.mail_from} → {', '.join(message.recipients)}: {message.subject}", markup=False)


@main.command()
@handle_errors
def demo() -> None:
    """Send the example campaign to a built-in SMTP server, then show the report.

    Needs no configuration and no network: a local test server starts on a free
    loopback port, receives every letter and stores it in a Maildir. The delivery
    log and the received letters go to ./mailaction-demo/ (replaced on each run).

    \b
    Example:
      mailaction demo
      mailaction report --log mailaction-demo/demo.sqlite     the demo's report, afterwards
    """
    from .sink import Sink

    log_path, maildir = reset_demo(Path(DEMO_FOLDER))
    with Sink(maildir) as server:
        config = demo_config(log_path, server.port)
        console.print(f"Demo SMTP server listening on 127.0.0.1:{server.port}")
        hooks = Hooks(plan=functools.partial(_print_plan, config, test_to=None), progress=_progress)
        result = send_campaign(config, SendOptions(), hooks)
        console.print(f"The server received {server.count} messages; they are in {os.path.relpath(maildir)}/", markup=False)
    console.print()
    with DeliveryLog(log_path, result.campaign, create=False) as delivery_log:
        print_table(load_report(delivery_log), console)
    console.print()
    console.print(f"Delivery log: {os.path.relpath(log_path)}  —  see it again with: mailaction report --log {os.path.relpath(log_path)}", markup=False)
    if result.problems:
        sys.exit(ExitStatus.SOME_FAILED)


@main.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--from-mailmerge", "mailmerge_dir", metavar="DIR",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Convert a mailmerge folder (mailmerge_template.txt, mailmerge_database.csv, mailmerge_server.conf).",
)  # fmt: skip
@handle_errors
def init(folder: Path | None, mailmerge_dir: Path | None) -> None:
    """Write a small working campaign into FOLDER (default: here), or convert a mailmerge folder.

    Without --from-mailmerge: mailaction.toml, a letter template with an attachment and a
    contact list, to edit; nothing is written if any of them exists. With --from-mailmerge,
    a mailaction.toml that sends the letters mailmerge would send from that folder (same
    template, database, SMTP server and rate limit), written into FOLDER (default: the
    mailmerge folder itself).

    \b
    Example:
      mailaction init my-campaign
      cd my-campaign && mailaction validate
      mailaction init --from-mailmerge ~/mailmerge-campaign
    """
    if mailmerge_dir is not None:
        config_path = convert_mailmerge(mailmerge_dir, folder)
        console.print(f"Wrote {config_path}", markup=False)
        console.print(f"Next: mailaction validate --config {config_path}", markup=False)
        return
    folder = folder or Path(".")
    written = write_example(folder)
    console.print(f"Wrote {len(written)} files to {folder}/:", markup=False)
    for path in written:
        console.print(f"  {path.relative_to(folder)}", markup=False)
    step = "" if folder.resolve() == Path.cwd().resolve() else f"cd {folder} && "
    console.print(f"Next: edit mailaction.toml, then {step}mailaction validate", markup=False)


@main.command()
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    help="Config file. Default: ./mailaction.toml, else ./config.example.toml.",
)  # fmt: skip
@click.option("--account", "account_name", metavar="NAME", help="With several [[smtp]] accounts: the one to keep the password of.")
@handle_errors
def login(config_path: Path | None, account_name: str | None) -> None:
    """Ask for the SMTP password once and keep it in the system keyring.

    With smtp.password = "keyring" in the config, send then reads it from there and
    never asks. The password is never printed, logged or written anywhere else.

    \b
    Example:
      mailaction login --config mailaction.toml
      mailaction login --account ana        one of several [[smtp]] accounts
    """
    config = read_config(config_path, None, None, None)
    smtp = login_account(config, account_name)
    password = click.prompt(f"SMTP password for {smtp.username} at {smtp.host}", hide_input=True)
    store_password(smtp, str(password))
    console.print(f"Kept the password for {smtp.username} at {smtp.address} in the system keyring.", markup=False)
    if smtp.password != "keyring":
        console.print('Set smtp.password = "keyring" in the config so that send reads it from there.', markup=False)
    console.print(f"To check that it logs in: mailaction validate --server{_config_hint(config)}", markup=False)


def suppression_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--config and --file, shared by the suppress commands."""
    command = click.option(
        "--file", "list_path", type=click.Path(path_type=Path, dir_okay=False),
        help="Suppression list file. Default: campaign.suppression of the config.",
    )(command)  # fmt: skip
    command = click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        help="Config file. Default: ./mailaction.toml, else ./config.example.toml.",
    )(command)  # fmt: skip
    return handle_errors(command)


def _suppression(config_path: Path | None, list_path: Path | None) -> SuppressionList:
    """The list named by --file, else the config's."""
    if list_path is not None:
        return SuppressionList(list_path)
    path = config_path or find_config()
    if path is None:
        raise ConfigError("no config: pass --config, or --file with the suppression list to use")
    return open_suppression(load_config(path).campaign)


@main.group()
def suppress() -> None:
    """The suppression list: addresses never written to (opt-outs, hard bounces).

    `send` skips letters to them in every campaign that uses the list; proof copies
    (--test-to) ignore it. Addresses match whatever their case.

    \b
    Example:
      mailaction suppress add someone@example.org
      mailaction suppress import opted-out.txt
      mailaction suppress list
    """


@suppress.command("add")
@suppression_options
@click.argument("addresses", nargs=-1, required=True)
def suppress_add(config_path: Path | None, list_path: Path | None, addresses: tuple[str, ...]) -> None:
    """Put addresses on the list.

    \b
    Example:
      mailaction suppress add someone@example.org other@example.net
    """
    checked = [checked_address(address, "suppress add") for address in addresses]
    with _suppression(config_path, list_path) as suppression:
        added = suppression.add_many(checked, "manual")
        console.print(f"Added {added}, {len(checked) - added} already there; {len(suppression)} on {suppression.path}.", markup=False)


@suppress.command("remove")
@suppression_options
@click.argument("addresses", nargs=-1, required=True)
def suppress_remove(config_path: Path | None, list_path: Path | None, addresses: tuple[str, ...]) -> None:
    """Take addresses off the list (they will be written to again).

    \b
    Example:
      mailaction suppress remove someone@example.org
    """
    with _suppression(config_path, list_path) as suppression:
        removed = sum(suppression.remove(address) for address in addresses)
        console.print(f"Removed {removed}, {len(addresses) - removed} not on the list; {len(suppression)} on {suppression.path}.", markup=False)


@suppress.command("list")
@suppression_options
def suppress_list(config_path: Path | None, list_path: Path | None) -> None:
    """Print every address with why and when it was added (tab-separated).

    \b
    Example:
      mailaction suppress list > suppressed.tsv
    """
    with _suppression(config_path, list_path) as suppression:
        for entry in suppression:
            added = datetime.fromtimestamp(entry.added_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            click.echo(f"{entry.address}\t{entry.reason}\t{added}")


@suppress.command("import")
@suppression_options
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
def suppress_import(config_path: Path | None, list_path: Path | None, source: Path) -> None:
    """Add the addresses of a text file, one a line (blank lines and # comments skipped).

    Nothing is added when a line is not an address; the line is named.

    \b
    Example:
      mailaction suppress import unsubscribed.txt
    """
    with _suppression(config_path, list_path) as suppression:
        added = suppression.import_file(source)
        console.print(f"Added {added} from {source}; {len(suppression)} on {suppression.path}.", markup=False)


@main.command()
@campaign_options
@click.option("--maildir", "maildir", type=click.Path(path_type=Path, file_okay=False), help="Read this Maildir folder instead of the IMAP mailbox.")
@click.option("--mbox", type=click.Path(path_type=Path, dir_okay=False), help="Read this mbox file instead of the IMAP mailbox.")
@click.option("--folder", help="IMAP folder to read (overrides imap.folder; default INBOX).")
@click.option("--delete-processed", is_flag=True, help="Delete the bounce messages whose letters were found in the log.")
def bounces(
    config_path: Path | None, template: Path | None, contacts: Path | None, log: Path | None,
    maildir: Path | None, mbox: Path | None, folder: str | None, delete_processed: bool,
) -> None:  # fmt: skip
    """Read bounces (delivery status notifications) from a mailbox into the delivery log.

    Hard bounces (5.x.x) make letters `bounced` and put their addresses on the suppression
    list; soft bounces (4.x.x) are noted; auto-replies are recognised and left alone.
    The mailbox is the [imap] one of the config (over TLS), or --maildir / --mbox.
    Reading the same mailbox again changes nothing.

    \b
    Example:
      mailaction bounces                       the [imap] mailbox of ./mailaction.toml
      mailaction bounces --mbox ~/mail/bounces
      mailaction bounces --delete-processed    then remove the bounces it used
    """
    from .bounces import read_bounces

    config = read_config(config_path, template, contacts, log)
    assert config.campaign.log is not None
    source = _bounce_mailbox(config, maildir, mbox, folder)
    try:
        with (
            open_log(config.campaign.log, config.campaign.name, create=False) as delivery_log,
            open_suppression(config.campaign) as suppression,
        ):
            summary = read_bounces(source, delivery_log, suppression, delete_processed=delete_processed)
    finally:
        source.close()
    console.print(
        f"Read {summary.messages} messages from {source.name}: {summary.bounce_messages} bounces,"
        f" {summary.auto_replies} auto-replies.",
        markup=False,
    )
    notes = [
        (summary.hard, "letters now bounced (hard)"),
        (summary.soft, "soft bounces noted (the server may still deliver)"),
        (summary.suppressed, f"addresses added to the suppression list {suppression.path}"),
        (summary.already, "bounces already in the delivery log"),
        (summary.unmatched, "bounces of letters this campaign did not send (left alone)"),
        (summary.deleted, "bounce messages deleted from the mailbox"),
    ]
    for count, text in notes:
        if count:
            console.print(f"  {count} {text}", markup=False)
    if not summary.hard and not summary.soft:
        console.print("Nothing new for the delivery log.")


def _bounce_mailbox(config: Config, maildir: Path | None, mbox: Path | None, folder: str | None) -> Mailbox:
    """The mailbox named on the command line, else the config's IMAP one."""
    from .bounces import IMAPMailbox, LocalMailbox

    if maildir is not None and mbox is not None:
        raise click.UsageError("pass --maildir or --mbox, not both")
    if maildir is not None:
        return LocalMailbox(maildir, "maildir")
    if mbox is not None:
        return LocalMailbox(mbox, "mbox")
    imap = config.imap
    if imap.host is None or imap.username is None:
        raise ConfigError(
            "no mailbox to read: set host and username in the [imap] section of the config,"
            " or pass --maildir DIR or --mbox FILE"
        )
    if not imap.verify_certificates:
        errors.print(
            "Warning: imap.verify_certificates = false: the server's certificate is not checked.",
            markup=False,
        )
    password = _secret("imap", imap.username, imap.password_env, imap.host)
    return IMAPMailbox(replace(imap, folder=folder or imap.folder), password)
