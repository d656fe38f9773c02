"""Planning a run and streaming its letters: the plan's letters are reused, none twice, in order."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailaction import delivery
from mailaction.campaign import Campaign
from mailaction.config import Config, load_config
from mailaction.delivery import Run, SendOptions, send_letters
from mailaction.deliverylog import DeliveryLog, Outcome, State
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


def rows_sent(run: Run) -> list[int]:
    return [letter.row for letter in run.letters()]


def test_letters_are_the_ones_the_plan_built(config: Config, log: DeliveryLog) -> None:
    run = Run(Campaign(config), log, SendOptions())
    plan = run.plan()
    letters = list(run.letters())
    assert len(letters) == plan.to_send == LETTERS
    # The same letters, only the Date header set again as they go out.
    assert all(
        replace(sent, data=b"") == replace(shown, data=b"")
        for sent, shown in zip(letters, plan.sample, strict=False)
    )
    assert [entry.state for entry in log.entries()] == [State.PENDING] * LETTERS


@pytest.mark.parametrize("kept", [0, 1, 4, LETTERS - 1])
def test_beyond_the_kept_letters_the_rest_come_once_in_order(
    config: Config, log: DeliveryLog, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    monkeypatch.setattr(delivery, "KEPT_LETTERS", kept)
    run = Run(Campaign(config), log, SendOptions())
    run.plan()
    rows = rows_sent(run)
    assert rows == sorted(set(rows)) and len(rows) == LETTERS


def test_the_byte_bound_also_limits_the_kept_letters(
    config: Config, log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Run(Campaign(config), log, SendOptions())
    first = run.plan().sample[0]
    monkeypatch.setattr(delivery, "KEPT_BYTES", len(first.data) * 3)
    run.plan()
    letters = list(run.letters())
    assert letters[0] is not first  # three were kept, not all; a new plan built new letters
    assert [letter.row for letter in letters] == sorted({letter.row for letter in letters})
    assert len(letters) == LETTERS


def test_limit_and_already_sent_letters_hold_beyond_the_kept_letters(
    config: Config, log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = list(Run(Campaign(config), log, SendOptions()).letters())
    for letter in first[:LETTERS:2]:
        log.mark_sending(letter.contact_id)
        log.mark_outcome(letter.contact_id, Outcome(State.SENT, 250, "ok"))
    monkeypatch.setattr(delivery, "KEPT_LETTERS", 2)
    run = Run(Campaign(config), log, SendOptions(limit=4))
    assert run.plan().to_send == 4
    assert rows_sent(run) == [letter.row for letter in first[1:LETTERS:2]][:4]


@pytest.mark.parametrize("kept", [2, LETTERS])
def test_letters_beyond_the_limit_are_logged_as_pending(
    config: Config, log: DeliveryLog, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    monkeypatch.setattr(delivery, "KEPT_LETTERS", kept)
    run = Run(Campaign(config), log, SendOptions(limit=3))
    run.plan()
    assert len(rows_sent(run)) == 3
    assert [entry.state for entry in log.entries()] == [State.PENDING] * LETTERS


def test_proof_copies_log_only_the_letters_sent(config: Config, tmp_path: Path) -> None:
    with DeliveryLog(tmp_path / "proof.sqlite", "plan [test]", lock=True) as proof_log:
        run = Run(Campaign(config), proof_log, SendOptions(limit=2, test_to="me@example.org"))
        run.plan()
        assert len(rows_sent(run)) == 2
        assert len(list(proof_log.entries())) == 2


def test_a_campaign_larger_than_the_bound_arrives_once_each_in_order(
    config: Config, log: DeliveryLog, sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "KEPT_LETTERS", 4)
    run = Run(Campaign(config), log, SendOptions())
    plan = run.plan()
    result = send_letters(Sender(config.smtp, config.sending, log), run.letters())
    assert plan.to_send == result.summary.sent == LETTERS
    expected = [entry.message_id for entry in log.entries()]
    assert [message_id for _, message_id in sink.arrivals] == expected
    assert len(set(expected)) == LETTERS
    assert log.counts()[State.SENT] == LETTERS


def test_garbage_collection_leaves_what_was_alive_before_sending_alone_during_the_run(
    config: Config, log: DeliveryLog
) -> None:
    run = Run(Campaign(config), log, SendOptions())
    run.plan()
    frozen: list[int] = []
    result = send_letters(
        Sender(config.smtp, config.sending, log),
        run.letters(),
        on_outcome=lambda letter, outcome: frozen.append(gc.get_freeze_count()),
    )
    assert result.summary.sent == LETTERS
    assert len(frozen) == LETTERS and min(frozen) > 0
    assert gc.get_freeze_count() == 0
