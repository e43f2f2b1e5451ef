"""Serial and KISS addresses: each option parsed, each mistake one line (serial/profile.py)."""

from __future__ import annotations

import pytest

from rise_dtn.carriers.address import Address
from rise_dtn.carriers.serial.profile import DEFAULT_GIVE_UP_SECONDS, PROFILES, spec_of
from rise_dtn.core.errors import UsageError


def test_a_cable_takes_its_line_rate_from_its_baud_rate() -> None:
    spec = spec_of(Address("serial", "/dev/ttyUSB0?baud=1200"))
    assert (spec.where, spec.baud, spec.profile.rate, spec.kiss) == (
        "/dev/ttyUSB0",
        1200,
        1200,
        False,
    )
    assert spec.profile.frame == PROFILES["cable"].frame
    assert spec.give_up_seconds == DEFAULT_GIVE_UP_SECONDS


def test_a_tnc_takes_its_line_rate_from_its_profile() -> None:
    spec = spec_of(Address("kiss+tcp", "//127.0.0.1:8001?profile=tnc9600&giveup=30"))
    assert spec.where == "127.0.0.1:8001" and spec.kiss
    assert spec.profile == PROFILES["tnc9600"]
    assert spec.give_up_seconds == 30.0


def test_options_override_the_profile() -> None:
    spec = spec_of(
        Address(
            "kiss",
            "/dev/ttyACM0?profile=lora&frame=200&window=8&duplex=full&mycall=N0CALL-1&dest=N0CALL-2",
        )
    )
    assert (spec.profile.frame, spec.profile.window, spec.profile.half_duplex) == (200, 8, False)
    assert (spec.mycall, spec.dest) == ("N0CALL-1", "N0CALL-2")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("serial:/dev/ttyS0?giveup=0", "giveup"),
        ("serial:/dev/ttyS0?giveup=soon", "malformed"),
        ("serial:/dev/ttyS0?speed=9600", "unknown option"),
        ("serial:/dev/ttyS0?profile=wifi", "unknown link profile"),
        ("serial:/dev/ttyS0?duplex=both", "duplex"),
        ("serial:/dev/ttyS0?frame=0", "frame"),
        ("serial:/dev/ttyS0?mycall=N0CALL&dest=N0CALL-2", "kiss"),
        ("kiss:/dev/ttyS0?mycall=N0CALL", "both"),
        ("kiss+tcp:127.0.0.1:8001", "kiss+tcp://"),
        ("serial:?baud=9600", "no port"),
    ],
)
def test_a_mistake_is_one_line(text: str, words: str) -> None:
    scheme, _colon, target = text.partition(":")
    with pytest.raises(UsageError) as caught:
        spec_of(Address(scheme, target))
    assert words in caught.value.message and "\n" not in caught.value.message
