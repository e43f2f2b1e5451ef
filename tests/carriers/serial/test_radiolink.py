"""Smoke tests of the paced link helper (tests/radiolink.py) through real ptys and pyserial.

Timing assertions are lower bounds only: the relay cannot deliver a byte
before its line time has passed, whatever the machine's load, but how much
later it arrives depends on the load. Waits are polls with a deadline.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import serial

from rise_dtn.core import serial_frame
from rise_dtn.core.serial_frame import SerialFrameDecoder
from tests.radiolink import BITS_PER_BYTE, LinkProfile, PacedLink, paced_link

DEADLINE_SECONDS = 30.0  # for a few KiB at the slowest rate here, on a loaded machine
READ_TIMEOUT_SECONDS = 0.05
FAST_BITS_PER_SECOND = 230_400  # for counting frames, where the rate does not matter


def open_port(path: str) -> serial.Serial:
    return serial.Serial(path, timeout=READ_TIMEOUT_SECONDS)


def receive_frames(
    port: serial.Serial,
    decoder: SerialFrameDecoder,
    until: Callable[[list[bytes]], bool],
    *,
    one_byte_at_a_time: bool = False,
) -> list[bytes]:
    """Read and decode until `until(frames)` holds; fail after DEADLINE_SECONDS."""
    frames: list[bytes] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not until(frames):
        assert time.monotonic() < deadline, f"only {len(frames)} frames arrived"
        data = port.read(1 if one_byte_at_a_time else max(port.in_waiting, 1))
        frames += decoder.feed(data)
    return frames


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)  # a poll with a deadline


def test_bytes_arrive_at_the_paced_rate_one_byte_at_a_time() -> None:
    profile = LinkProfile(bits_per_second=9600)
    payload = os.urandom(470)
    frame = serial_frame.encode(payload)
    with paced_link(profile) as link, open_port(link.a_path) as a, open_port(link.b_path) as b:
        started = time.monotonic()
        a.write(frame)
        frames = receive_frames(b, SerialFrameDecoder(), bool, one_byte_at_a_time=True)
        elapsed = time.monotonic() - started
    assert frames == [payload]
    line_seconds = len(frame) * BITS_PER_BYTE / profile.bits_per_second
    assert elapsed >= line_seconds * 0.95  # the clock's granularity, no more


def test_both_directions_at_once_on_a_full_duplex_link() -> None:
    payloads = [os.urandom(100) for _ in range(2)]
    profile = LinkProfile(bits_per_second=19200)
    with paced_link(profile) as link, open_port(link.a_path) as a, open_port(link.b_path) as b:
        a.write(serial_frame.encode(payloads[0]))
        b.write(serial_frame.encode(payloads[1]))
        assert receive_frames(b, SerialFrameDecoder(), bool) == [payloads[0]]
        assert receive_frames(a, SerialFrameDecoder(), bool) == [payloads[1]]


def three(frames: list[bytes]) -> bool:
    return len(frames) == 3


def test_half_duplex_sends_one_way_at_a_time_with_a_turnaround() -> None:
    """Both sides write at once, three frames each: all arrive, and no sooner than
    both sides' line time plus a turn-around (the line was never shared)."""
    profile = LinkProfile(bits_per_second=19200, half_duplex=True, turnaround_seconds=0.2)
    to_b, to_a = ([os.urandom(100) for _ in range(3)] for _side in "ab")
    with paced_link(profile) as link, open_port(link.a_path) as a, open_port(link.b_path) as b:
        started = time.monotonic()
        a.write(b"".join(map(serial_frame.encode, to_b)))
        b.write(b"".join(map(serial_frame.encode, to_a)))
        assert receive_frames(b, SerialFrameDecoder(), three) == to_b
        assert receive_frames(a, SerialFrameDecoder(), three) == to_a
        elapsed = time.monotonic() - started
    line_bytes = sum(len(serial_frame.encode(payload)) for payload in to_b + to_a)
    both_lines = line_bytes * BITS_PER_BYTE / profile.bits_per_second
    assert elapsed >= (both_lines + profile.turnaround_seconds) * 0.95


def count_through(profile: LinkProfile, count: int) -> tuple[list[int], PacedLink]:
    """Send `count` numbered frames A to B; the numbers that arrived intact."""
    with paced_link(profile) as link, open_port(link.a_path) as a, open_port(link.b_path) as b:
        a.write(
            b"".join(serial_frame.encode(b"%05d" % index + bytes(20)) for index in range(count))
        )
        decoder = SerialFrameDecoder()

        def settled(frames: list[bytes]) -> bool:
            stats = link.stats["a->b"]
            judged = stats.frames_passed + stats.frames_dropped == count
            return judged and len(frames) + sum(decoder.drops.values()) >= stats.frames_passed

        frames = receive_frames(b, decoder, settled)
        stats = link.stats["a->b"]
        assert len(frames) == stats.frames_passed - stats.frames_corrupted
        assert sum(decoder.drops.values()) == stats.frames_corrupted  # CRC-32 caught every one
        return [int(frame[:5]) for frame in frames], link


def test_loss_and_corruption_follow_the_seed() -> None:
    count = 200
    profile = LinkProfile(
        bits_per_second=FAST_BITS_PER_SECOND, drop_rate=0.2, corrupt_rate=0.1, seed=7
    )
    arrived, link = count_through(profile, count)
    stats = link.stats["a->b"]
    assert 0.1 * count < stats.frames_dropped < 0.3 * count
    assert 0.02 * count < stats.frames_corrupted < 0.2 * count
    assert arrived == sorted(arrived)
    again, _ = count_through(profile, count)
    assert again == arrived  # the same seed loses the same frames
    other, _ = count_through(dataclasses.replace(profile, seed=8), count)
    assert other != arrived


def test_a_pulled_cable_loses_what_is_sent_until_plugged_back() -> None:
    first, lost, last = (serial_frame.encode(b"%d" % index * 50) for index in range(3))
    profile = LinkProfile(bits_per_second=19200)
    with paced_link(profile) as link, open_port(link.a_path) as a, open_port(link.b_path) as b:
        decoder = SerialFrameDecoder()
        a.write(first)
        assert receive_frames(b, decoder, bool) == [b"0" * 50]
        link.pull_cable()
        a.write(lost)
        wait_for(lambda: link.stats["a->b"].bytes_lost_to_cable >= len(lost))
        link.plug_cable()
        a.write(last)
        assert receive_frames(b, decoder, bool) == [b"2" * 50]
        assert decoder.drops == {}


def test_a_byte_budget_pulls_the_cable_after_that_many_bytes_from_a() -> None:
    """cut_after_bytes: the first bytes from A still arrive, nothing after them; B's
    bytes stop too (the cable is out), and lone FENDs between frames are not frames."""
    frames = [serial_frame.encode(b"%d" % index * 40) for index in range(3)]
    budget = len(frames[0]) + 5  # the first frame and a few bytes of the second
    profile = LinkProfile(bits_per_second=FAST_BITS_PER_SECOND, cut_after_bytes=budget)
    with paced_link(profile) as link, open_port(link.a_path) as a, open_port(link.b_path) as b:
        decoder = SerialFrameDecoder()
        a.write(b"".join(frames))
        assert receive_frames(b, decoder, bool) == [b"0" * 40]
        wait_for(lambda: link.stats["a->b"].bytes_lost_to_cable >= sum(map(len, frames)) - budget)
        b.write(frames[0])
        wait_for(lambda: link.stats["b->a"].bytes_lost_to_cable >= len(frames[0]))
        stats = link.stats
    assert stats["a->b"].frames_passed == 1 and stats["a->b"].frames_dropped == 0
    assert stats["b->a"].frames_passed == 0
