"""DKIM: letters arrive signed, and dkimpy verifies them against the public key (DNS stubbed)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner

from mailaction.campaign import Campaign
from mailaction.cli import main
from mailaction.config import DKIMConfig, load_config
from mailaction.dkim import DKIMSigner, alignment_problem
from mailaction.errors import ConfigError
from tests.campaigns import RecordingSink, numbered_campaign
from tests.conftest import DKIM_DOMAIN, DKIM_SELECTOR
from tests.letters import letter
from tests.test_postfix import SMTP_SINK, PostfixSink

SELECTOR, DOMAIN = DKIM_SELECTOR, DKIM_DOMAIN
LETTERS = 3


def signed_campaign(folder: Path, port: int, key: Path) -> Path:
    config = numbered_campaign(folder, port, LETTERS, "signed", "concurrency = 1")
    with config.open("a", encoding="utf-8") as out:
        out.write(
            f'\n[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\nprivate_key = "{key}"\n'
        )
    return config


def send(config: Path) -> None:
    result = CliRunner().invoke(main, ["send", "--config", str(config), "--yes"])
    assert result.exit_code == 0, result.output


def received(maildir: Path) -> Iterator[bytes]:
    for path in sorted((maildir / "new").iterdir()):
        yield path.read_bytes()


def test_letters_received_at_the_sink_verify_against_the_public_key(
    tmp_path: Path,
    sink: RecordingSink,
    dkim_keys: tuple[Path, bytes],
    dkim_dns: Callable[..., bytes | None],
) -> None:
    send(signed_campaign(tmp_path, sink.port, dkim_keys[0]))
    messages = list(received(tmp_path / "maildir"))
    assert len(messages) == LETTERS
    for message in messages:
        assert dkim.verify(message, dnsfunc=dkim_dns)
        signature = dkim.DKIM(message)
        assert signature.verify(dnsfunc=dkim_dns)
        signed = set(signature.include_headers)
        assert {b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"} <= signed
        assert signature.domain == DOMAIN.encode()
        # A changed subject no longer verifies: the signature covers it.
        assert not dkim.verify(
            message.replace(b"Subject: Letter", b"Subject: Lettre"), dnsfunc=dkim_dns
        )


@pytest.mark.skipif(not shutil.which(SMTP_SINK), reason="Postfix's smtp-sink is not installed")
def test_letters_verify_after_passing_through_postfix_smtp_sink(
    tmp_path: Path,
    free_port: int,
    dkim_keys: tuple[Path, bytes],
    dkim_dns: Callable[..., bytes | None],
) -> None:
    server = PostfixSink(free_port)
    try:
        send(signed_campaign(tmp_path, free_port, dkim_keys[0]))
        dumps = [path.read_bytes() for path in server.dumps.rglob("*") if path.is_file()]
    finally:
        server.stop()
    assert len(dumps) == LETTERS
    assert all(dkim.verify(dump, dnsfunc=dkim_dns) for dump in dumps)


def test_a_signature_from_another_key_does_not_verify(
    tmp_path: Path, dkim_keys: tuple[Path, bytes], dkim_dns: Callable[..., bytes | None]
) -> None:
    other = tmp_path / "other.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(other), "2048"], check=True, capture_output=True
    )
    data = letter(1).data
    assert dkim.verify(
        DKIMSigner(DKIMConfig(SELECTOR, DOMAIN, dkim_keys[0])).sign(data), dnsfunc=dkim_dns
    )
    assert not dkim.verify(
        DKIMSigner(DKIMConfig(SELECTOR, DOMAIN, other)).sign(data), dnsfunc=dkim_dns
    )


def test_a_key_that_is_not_a_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END RSA PRIVATE KEY-----\n"
    )
    with pytest.raises(
        ConfigError, match="not a PEM RSA private key without a passphrase"
    ) as raised:
        DKIMSigner(DKIMConfig(SELECTOR, DOMAIN, key))
    assert "c2VjcmV0" not in str(raised.value) and str(key) in str(raised.value)


def test_a_missing_key_file_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dkim.private_key .*absent.pem: cannot read the key"):
        DKIMSigner(DKIMConfig(SELECTOR, DOMAIN, tmp_path / "absent.pem"))


def test_dkim_settings_come_together(tmp_path: Path) -> None:
    config = tmp_path / "mailaction.toml"
    config.write_text('[dkim]\nselector = "s1"\ndomain = "example.org"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="missing dkim.private_key"):
        load_config(config)
    config.write_text('[dkim]\nselector = "s1"\ndomain = "example.org"\nprivate_key = "k.pem"\n')
    assert load_config(config).dkim.private_key == tmp_path / "k.pem"


@pytest.mark.parametrize(
    ("sender", "aligned"),
    [
        ("campaign@example.org", True),
        ("campaign@news.example.org", True),
        ("CAMPAIGN@EXAMPLE.ORG", True),
        ("campaign@example.net", False),
        ("campaign@notexample.org", False),
    ],
)
def test_from_domain_alignment(sender: str, aligned: bool) -> None:
    problem = alignment_problem(DKIMConfig(SELECTOR, DOMAIN, Path("k.pem")), sender)
    assert (problem is None) is aligned
    if not aligned:
        assert "dkim.domain 'example.org'" in str(problem)


def test_validate_loads_the_key_and_warns_when_from_does_not_align(
    tmp_path: Path, dkim_keys: tuple[Path, bytes]
) -> None:
    config = signed_campaign(tmp_path, 1025, dkim_keys[0])
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 0
    assert (
        f"DKIM: letters will be signed for {DOMAIN} (selector {SELECTOR}); the key loads."
        in result.output
    )
    assert "Warning" not in result.output
    letter_file = tmp_path / "letter.txt"
    letter_file.write_text(
        letter_file.read_text().replace("campaign@example.org", "campaign@example.net")
    )
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 0
    assert (
        "Warning: letter.txt (From), rows 2, 3, 4: From domain 'example.net' does not align with"
        " dkim.domain 'example.org'"
    ) in result.output


def test_validate_with_an_unusable_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key\n")
    result = CliRunner().invoke(
        main, ["validate", "--config", str(signed_campaign(tmp_path, 1025, key))]
    )
    assert result.exit_code == 2
    assert (
        f"Error: dkim.private_key {key}: not a PEM RSA private key without a passphrase"
        in result.output
    )
    assert "not a key" not in result.output.replace("not a PEM", "")


def test_every_letter_of_the_example_campaign_verifies(
    dkim_keys: tuple[Path, bytes], dkim_dns: Callable[..., bytes | None]
) -> None:
    signer = DKIMSigner(DKIMConfig(SELECTOR, DOMAIN, dkim_keys[0]))
    example = load_config(Path(__file__).resolve().parent.parent / "config.example.toml")
    letters = list(Campaign(example).letters())
    assert letters
    for built in letters:
        signed = signer.sign(built.data)
        assert dkim.verify(signed, dnsfunc=dkim_dns), built.row
        head = signed.partition(b"\r\n\r\n")[0]
        assert max(map(len, head.split(b"\r\n"))) <= 998


@pytest.mark.parametrize(
    "data",
    [
        b"From: a@example.org\r\nSubject: no body\r\n\r\n",
        b"From: a@example.org\r\nSubject: blank lines\r\n\r\nText.\r\n\r\n\r\n",
        b"From: a@example.org\r\nSubject:  folded\r\n   over\tlines \r\nTo: b@example.net\r\n\r\nHi\r\n",
        b"From: a@example.org\r\nTo: first@example.net\r\nTo: second@example.net\r\n\r\nHi\r\n",
    ],
)
def test_edge_cases_of_canonicalisation_verify(
    data: bytes, dkim_keys: tuple[Path, bytes], dkim_dns: Callable[..., bytes | None]
) -> None:
    signed = DKIMSigner(DKIMConfig(SELECTOR, DOMAIN, dkim_keys[0])).sign(data)
    assert dkim.verify(signed, dnsfunc=dkim_dns)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["genpkey", "-algorithm", "ed25519"], "not an RSA key"),
        (["genrsa", "512"], "a 512-bit key is refused by receivers"),
    ],
)
def test_keys_receivers_refuse_are_refused(
    tmp_path: Path, command: list[str], message: str
) -> None:
    key = tmp_path / "key.pem"
    subprocess.run(
        ["openssl", *command[:1], "-out", str(key), *command[1:]], check=True, capture_output=True
    )
    with pytest.raises(ConfigError, match=message):
        DKIMSigner(DKIMConfig(SELECTOR, DOMAIN, key))
