"""api.faults without a server: duration parsing."""
from datetime import timedelta

import click
import pytest

from api.faults import parse_duration


@pytest.mark.parametrize("text,expected", [
    ("30s", timedelta(seconds=30)), ("10m", timedelta(minutes=10)), ("1h", timedelta(hours=1)),
    ("1h30m", timedelta(minutes=90)), ("2m5s", timedelta(seconds=125)), ("24h", timedelta(1)),
    (" 5M ", timedelta(minutes=5)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0s", "25h", "10", "ten", "1d", "-5m", "5m1h", "1.5h"])
def test_bad_durations(text):
    with pytest.raises(click.BadParameter):
        parse_duration(text)
