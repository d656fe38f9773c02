"""Config loading: defaults, types, unknown keys, rates, relative paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailaction.config import Rate, load_config, parse_rate, setting_names
from mailaction.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailaction.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.smtp.security == "none"
    assert config.sending.rate is None
    assert config.campaign.id_column == "email"
    assert config.campaign.log == Path.cwd() / "campaign.sqlite"


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", '[campaign]\nname = "My Action!"\ntemplate = "letter.txt"\n')
    config = load_config(path)
    assert config.campaign.template == tmp_path / "sub" / "letter.txt"
    assert config.campaign.log == tmp_path / "sub" / "my-action.sqlite"


def test_overrides_replace_config_values(tmp_path: Path) -> None:
    path = write(tmp_path, '[campaign]\ntemplate = "a.txt"\ncontacts = "c.csv"\n')
    config = load_config(path, {"template": Path("/elsewhere/b.txt"), "contacts": None})
    assert config.campaign.template == Path("/elsewhere/b.txt")
    assert config.campaign.contacts == tmp_path / "c.csv"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[smtp]\nhots = 'x'\n", "unknown key smtp.hots"),
        ("[smpt]\nhost = 'x'\n", "unknown section [smpt]"),
        ("[smtp]\nport = '25'\n", "smtp.port must be a whole number"),
        ("[smtp]\nport = true\n", "smtp.port must be a whole number"),
        ("[smtp]\nport = 0\n", "smtp.port must be a port number from 1 to 65535, not 0"),
        ("[smtp]\nport = 70000\n", "smtp.port must be a port number from 1 to 65535, not 70000"),
        ("[smtp]\nhost = ' '\n", "smtp.host must not be empty"),
        ("[campaign]\ntemplate = ''\n", "campaign.template must not be empty"),
        ("[sending]\nretry_delay = -1\n", "sending.retry_delay must be 0 or more"),
        ("[smtp]\nsecurity = 'tls'\n", "smtp.security must be one of"),
        ("[sending]\nrate = 'fast'\n", "sending.rate 'fast' is not a rate"),
        ("[sending]\nrate = 10\n", 'sending.rate must be text like "10/s"'),
        ("[sending]\nper_domain_rate = '0/s'\n", "sending.per_domain_rate '0/s' is not a rate"),
        ("[sending]\nconcurrency = 2.5\n", "sending.concurrency must be a whole number"),
        ("[sending]\nmax_retries = -1\n", "sending.max_retries must be 0 or more"),
        ("[sending]\ntimeout = 'long'\n", "sending.timeout must be a number"),
        ("[campaign]\ncheck_deliverability = 'yes'\n", "campaign.check_deliverability must be true or false"),
        ("smtp = 1\n", "smtp must be a [smtp] table"),
        ("template = 'a.txt'\n[campaign]\nname = 'x'\n", "template is above [campaign]; move it under [campaign]"),
        ("port = 25\n[smtp]\n", "port is above [smtp]; move it under [smtp]"),
        ("colour = 'red'\n", "unknown key colour above the sections"),
        ("[smtp\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_config(write(tmp_path, text))
    assert "\n" not in str(caught.value)
    assert str(tmp_path / "mailaction.toml") in str(caught.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_numbers_accept_integers_for_floats(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[sending]\ntimeout = 5\nretry_delay = 0\n"))
    assert config.sending.timeout == 5.0 and isinstance(config.sending.timeout, float)
    assert config.sending.retry_delay == 0.0


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("10/s", 10), ("600/min", 10), ("2000/hour", 2000 / 3600), ("86400/day", 1), (" 5 / second ", 5),
     ("3/minutes", 0.05), ("1.5/s", 1.5)],
)
def test_valid_rates(text: str, per_second: float) -> None:
    assert parse_rate(text).per_second == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["fast", "10", "/s", "10/fortnight", "0/s", "-1/s", "10 per s", ""])
def test_invalid_rates(text: str) -> None:
    with pytest.raises(ValueError, match="is not a rate"):
        parse_rate(text)


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["s", "min", "hour", "day"]))
def test_rate_round_trips_through_its_text(count: int, unit: str) -> None:
    rate = parse_rate(f"{count}/{unit}")
    assert parse_rate(str(rate)) == rate
    assert rate == Rate(count, {"s": 1, "min": 60, "hour": 3600, "day": 86400}[unit])


@given(st.text(max_size=20))
def test_rate_parser_never_raises_anything_but_value_error(text: str) -> None:
    try:
        rate = parse_rate(text)
    except ValueError:
        return
    assert rate.per_second > 0


def test_example_config_loads_and_documents_every_key() -> None:
    example = ROOT / "config.example.toml"
    config = load_config(example)
    assert config.campaign.template is not None and config.campaign.template.is_file()
    assert config.campaign.contacts is not None and config.campaign.contacts.is_file()
    text = example.read_text(encoding="utf-8")
    for section, keys in setting_names().items():
        assert f"[{section}]" in text
        for key in keys:
            assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"{section}.{key} not documented"
