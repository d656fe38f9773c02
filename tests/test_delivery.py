"""The queued campaign: a plan queues every letter in the log; sending reads only the queue."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailaction.campaign import Campaign
from mailaction.config import Config, load_config
from mailaction.delivery import Hooks, Run, SendOptions, send_campaign, send_letters
from mailaction.deliverylog import DeliveryLog, Outcome, State
from mailaction.errors import InvalidCampaign
from mailaction.sender import Sender
from tests.campaigns import RecordingSink, numbered_campaign

LETTERS = 11


@pytest.fixture
def config(tmp_path: Path, sink: RecordingSink) -> Config:
    return load_config(numbered_campaign(tmp_path, sink.port, LETTERS, "plan", "concurrency = 1"))


@pytest.fixture
def log(config: Config) -> Iterator[DeliveryLog]:
    assert config.campaign.log is not None
    with DeliveryLog(config.campaign.log, config.campaign.name, lock=True) as log:
        yield log


def queued_run(config: Config, log: DeliveryLog, **options: object) -> Run:
    """A run whose plan is made and committed, as a confirmed `send` does."""
    run = Run(Campaign(config), log, SendOptions(**options))  # type: ignore[arg-type]
    run.plan()
    log.flush()
    return run


def test_the_plan_queues_every_letter_and_sending_reads_them_back(
    config: Config, log: DeliveryLog
) -> None:
    run = Run(Campaign(config), log, SendOptions())
    plan = run.plan()
    log.flush()
    assert plan.to_send == plan.new == LETTERS
    assert [entry.state for entry in log.entries()] == [State.PENDING] * LETTERS
    letters = list(run.letters())
    assert [letter.row for letter in letters] == list(range(2, LETTERS + 2))
    shown = {letter.message_id: letter for letter in plan.sample}
    for letter in letters[: len(shown)]:
        built = shown[letter.message_id]
        assert (letter.recipients, letter.sender, letter.fingerprint) == (
            built.recipients, built.sender, built.fingerprint,
        )  # fmt: skip
        # The same bytes, only the Date header set again as the letter goes out.
        assert letter.data.split(b"Date:")[0] == built.data.split(b"Date:")[0]
        assert letter.data.partition(b"\r\n\r\n")[2] == built.data.partition(b"\r\n\r\n")[2]


def test_nothing_is_queued_until_the_plan_is_committed(config: Config, log: DeliveryLog) -> None:
    Run(Campaign(config), log, SendOptions()).plan()
    assert config.campaign.log is not None
    with DeliveryLog(config.campaign.log, "plan") as reader:  # sees only what was committed
        assert sum(reader.counts().values()) == 0
    log.rollback()
    assert sum(log.counts().values()) == 0


def test_limit_sends_the_first_letters_and_queues_the_rest(config: Config, log: DeliveryLog) -> None:
    run = queued_run(config, log, limit=3)
    assert [letter.row for letter in run.letters()] == [2, 3, 4]
    assert log.counts()[State.PENDING] == LETTERS


def test_sent_letters_are_not_queued_again(config: Config, log: DeliveryLog) -> None:
    first = list(queued_run(config, log).letters())
    for letter in first[::2]:
        log.mark_sending(letter.contact_id)
        log.mark_outcome(letter.contact_id, Outcome(State.SENT, 250, "ok"))
    run = Run(Campaign(config), log, SendOptions(limit=4))
    plan = run.plan()
    assert (plan.to_send, plan.already_sent, plan.new) == (4, 6, 0)
    assert [letter.row for letter in run.letters()] == [letter.row for letter in first[1::2]][:4]


def test_proof_copies_queue_only_the_letters_sent(config: Config, tmp_path: Path) -> None:
    with DeliveryLog(tmp_path / "proof.sqlite", "plan [test]", lock=True) as proof_log:
        run = queued_run(config, proof_log, limit=2, test_to="me@example.org")
        letters = list(run.letters())
        assert [letter.recipients for letter in letters] == [("me@example.org",)] * 2
        assert len(list(proof_log.entries())) == 2


def test_what_is_sent_is_what_was_queued_even_if_every_source_file_changes(
    config: Config, log: DeliveryLog, sink: RecordingSink
) -> None:
    run = queued_run(config, log)
    assert config.campaign.template is not None and config.campaign.contacts is not None
    config.campaign.template.write_text("To: {{ email }}\nSubject: Other\n\nReplaced.\n", "utf-8")
    config.campaign.contacts.write_text("email,n\nnew@example.org,1\n", encoding="utf-8")
    result = send_letters(Sender(config.smtp, config.sending, log), run.letters())
    assert result.summary.sent == LETTERS
    assert sorted(sink.received) == sorted(entry.message_id for entry in log.entries())
    bodies = [path.read_bytes() for path in (Path(sink.maildir) / "new").iterdir()]
    assert all(b"Thank you." in body and b"Replaced" not in body for body in bodies)


def test_a_campaign_arrives_once_each_in_order(
    config: Config, log: DeliveryLog, sink: RecordingSink
) -> None:
    run = queued_run(config, log)
    result = send_letters(Sender(config.smtp, config.sending, log), run.letters())
    assert result.summary.sent == LETTERS
    expected = [entry.message_id for entry in log.entries()]
    assert [message_id for _, message_id in sink.arrivals] == expected
    assert len(set(expected)) == LETTERS
    assert log.counts()[State.SENT] == LETTERS


def test_garbage_collection_leaves_what_was_alive_before_sending_alone_during_the_run(
    config: Config, log: DeliveryLog
) -> None:
    run = queued_run(config, log)
    frozen: list[int] = []
    result = send_letters(
        Sender(config.smtp, config.sending, log),
        run.letters(),
        on_outcome=lambda letter, outcome: frozen.append(gc.get_freeze_count()),
    )
    assert result.summary.sent == LETTERS
    assert len(frozen) == LETTERS and min(frozen) > 0
    assert gc.get_freeze_count() == 0


def test_an_attachment_is_stored_once_for_every_letter(tmp_path: Path, sink: RecordingSink) -> None:
    config_path = numbered_campaign(tmp_path, sink.port, 40, "big", "concurrency = 2")
    (tmp_path / "report.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    letter = tmp_path / "letter.txt"
    letter.write_text(
        letter.read_text(encoding="utf-8").replace("Subject:", "Attachment: report.bin\nSubject:")
    )
    result = send_campaign(load_config(config_path))
    assert result.summary.sent == 40
    log_path = tmp_path / "big.sqlite"
    with sqlite3.connect(log_path) as db:
        assert db.execute("SELECT count(*) FROM blobs").fetchone() == (1,)
    assert log_path.stat().st_size < 4 * 2**20  # 40 letters, one 1.4 MB encoded part
    assert all(len(path.read_bytes()) > 2**20 for path in (tmp_path / "maildir" / "new").iterdir())


def test_an_invalid_row_queues_nothing(config: Config) -> None:
    assert config.campaign.contacts is not None
    with config.campaign.contacts.open("a", encoding="utf-8") as contacts:
        contacts.write("not-an-address,99\n")
    with pytest.raises(InvalidCampaign):
        send_campaign(config)
    assert config.campaign.log is not None
    with DeliveryLog(config.campaign.log, "plan") as log:
        assert sum(log.counts().values()) == 0


def test_declining_the_question_queues_nothing(config: Config, sink: RecordingSink) -> None:
    seen = []
    hooks = Hooks(plan=seen.append, confirm=lambda plan: False)
    result = send_campaign(config, SendOptions(), hooks)
    assert result.declined and not result.sent and seen[0].to_send == LETTERS
    assert sink.count == 0
    assert config.campaign.log is not None
    with DeliveryLog(config.campaign.log, "plan") as log:
        assert sum(log.counts().values()) == 0
