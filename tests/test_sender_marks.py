"""The `sending` marks: committed together when letters go out together, each before its data."""

from __future__ import annotations

import asyncio
import time
from email.parser import BytesParser
from pathlib import Path

import pytest

from mailaction.deliverylog import DeliveryLog, Outcome, State
from mailaction.errors import DeliveryLogError
from mailaction.sender import Sender
from tests.letters import letters
from tests.smtpserver import FaultServer, FaultSession, reply
from tests.test_sender import send, sending_config, smtp_config


async def test_each_sending_mark_is_on_disk_before_its_data(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    seen_sending: list[bool] = []

    async def check_the_mark(session: FaultSession, arg: str | None) -> str | None:
        # What another process would read now: the letter's committed state.
        assert session.envelope is not None
        message_id = BytesParser().parsebytes(session.envelope.original_content or b"")
        with DeliveryLog(path, "test") as reader:
            found = [e for e in reader.entries() if e.message_id == message_id["Message-ID"]]
        seen_sending.append(len(found) == 1 and found[0].state is State.SENDING)
        return None

    batch = letters(40)
    with FaultServer(pipelining=True) as server, DeliveryLog(path, "test") as log:
        server.on("DATA_END", check_the_mark)
        summary = await send(server, log, batch, concurrency=8)
    assert summary.sent == 40
    assert seen_sending == [True] * 40


async def test_letters_going_out_together_share_one_commit_of_their_marks(
    tmp_path: Path,
) -> None:
    class Counting(DeliveryLog):
        commits = 0

        def flush(self) -> None:
            if self._db.in_transaction:
                Counting.commits += 1
            super().flush()

    batch = letters(400)
    with FaultServer(pipelining=True) as server, Counting(tmp_path / "log.sqlite", "test") as log:
        summary = await send(server, log, batch, concurrency=8)
    assert summary.sent == 400
    # One commit per letter before; eight connections' replies arrive together, their
    # letters' marks share commits (measured about one commit per three or four letters).
    assert Counting.commits < 0.75 * 400



async def test_no_commit_of_a_run_checkpoints_the_log_on_its_loop(tmp_path: Path) -> None:
    # SQLite's automatic checkpoint would copy the WAL (at first the whole queue) inside a
    # commit, stalling every connection for tens of ms: it is off while the run sends, and a
    # thread checkpoints every CHECKPOINT_EVERY letters instead.
    automatic: set[int] = set()  # the setting whenever a letter was about to go
    checkpoints: list[float] = []

    class Watched(DeliveryLog):
        def mark_sending(self, contact_id: str, *, commit: bool = True) -> None:
            automatic.add(self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            super().mark_sending(contact_id, commit=commit)

        def checkpoint(self) -> None:
            checkpoints.append(time.monotonic())
            super().checkpoint()

    batch = letters(400)
    with FaultServer(pipelining=True) as server, Watched(tmp_path / "log.sqlite", "test") as log:
        summary = await send(server, log, batch, concurrency=8)
        assert log._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
    assert summary.sent == 400
    assert automatic == {0}
    assert len(checkpoints) >= 2

async def test_no_data_goes_out_when_its_mark_cannot_be_committed(tmp_path: Path) -> None:
    # The disk fills as the first letters are about to go: their marks cannot be committed,
    # so none of their data may be written, and the run stops with the log's error.
    class FullDisk(DeliveryLog):
        full = False

        def flush(self) -> None:
            if self.full and (self._pending or self._db.in_transaction):
                raise DeliveryLogError("log.sqlite: cannot write the delivery log: disk full")
            super().flush()

    batch = letters(20)
    with FaultServer(pipelining=True) as server, FullDisk(tmp_path / "log.sqlite", "test") as log:
        for item in batch:
            log.register(item)  # type: ignore[arg-type]
        log.flush()
        log.full = True
        sender = Sender(smtp_config(server), sending_config(concurrency=4), log)
        with pytest.raises(DeliveryLogError, match="disk full"):
            await asyncio.wait_for(sender.send(batch), 10)  # type: ignore[arg-type]
        log.full = False
    assert server.messages == []


async def test_a_letter_refused_before_its_data_is_never_sending_on_disk(tmp_path: Path) -> None:
    # Its attempt is counted with the mark, committed together with the outcome: a crash in
    # between must not leave it `sending`, which a resumed run would take as maybe delivered.
    path = tmp_path / "log.sqlite"
    on_disk: list[State] = []

    class Watched(DeliveryLog):
        def mark_outcome(self, contact_id: str, outcome: Outcome) -> None:
            with DeliveryLog(path, "test") as reader:
                on_disk.extend(e.state for e in reader.entries() if e.contact_id == contact_id)
            super().mark_outcome(contact_id, outcome)

    batch = letters(3)
    with FaultServer() as server, Watched(path, "test") as log:
        for item in batch:
            log.register(item)  # type: ignore[arg-type]
        log.flush()
        server.on("MAIL", reply("550 5.7.1 sender refused"), times=1)
        summary = await Sender(smtp_config(server), sending_config(), log).send(batch)  # type: ignore[arg-type]
    assert summary.failed == 1 and summary.sent == 2
    # The refused letter (the first) is still queued on disk; the two sent ones are `sending`.
    assert on_disk == [State.PENDING, State.SENDING, State.SENDING]
