"""The ARQ core on a simulated line with a virtual clock: loss, half duplex, wrapping.

The line is a first-in first-out queue per direction with a rate and a
seeded loss; time is virtual, so these tests are deterministic and fast.
The real line (ptys, Direwolf) is in tests/carriers/serial.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rise_dtn.core import arq
from rise_dtn.core.errors import FrameError

RATE = 960.0


def _run(
    data_a: bytes,
    data_b: bytes,
    *,
    loss: float,
    seed: int = 1,
    window: int = 32,
    payload: int = 200,
    half_duplex: bool = False,
    limit: float = 10_000.0,
) -> tuple[bytes, bytes, float, arq.Arq]:
    timing = arq.LinkTiming(bytes_per_second=RATE, turnaround=0.05, half_duplex=half_duplex)
    a = arq.Arq(7, payload_bytes=payload, window=window, timing=timing)
    b = arq.Arq(7, payload_bytes=payload, window=window, timing=timing)
    a.write(data_a)
    a.close()
    b.write(data_b)
    b.close()
    rng = random.Random(seed)
    lines: dict[str, list[tuple[float, bytes]]] = {"ab": [], "ba": []}
    free = {"ab": 0.0, "ba": 0.0}
    got = {"a": bytearray(), "b": bytearray()}
    now = 0.0
    while now < limit:
        for _name, end, line, other in (("a", a, "ab", "ba"), ("b", b, "ba", "ab")):
            start = max(now, free[line])
            if half_duplex:
                start = max(start, free[other] + 0.05)
            frames = end.transmit(now)
            for frame in frames:
                start += (len(frame) + 8) / RATE
                if rng.random() >= loss:
                    lines[line].append((start, frame))
            if frames:
                free[line] = start
        for name, end, line in (("b", b, "ab"), ("a", a, "ba")):
            while lines[line] and lines[line][0][0] <= now:
                _at, frame = lines[line].pop(0)
                end.receive(frame, now)
            got[name] += end.take()
        if a.eof and b.eof and a.flushed and b.flushed:
            return bytes(got["b"]), bytes(got["a"]), now, a
        now += 0.01
    raise AssertionError("the transfer did not finish")


def test_clean_line_moves_both_streams_with_one_ack_per_window() -> None:
    data = random.Random(2).randbytes(64_000)
    at_b, at_a, seconds, a = _run(data, b"reply", loss=0.0)
    assert at_b == data and at_a == b"reply"
    assert a.stats.frames_resent == 0 and a.stats.timeouts == 0
    frames = -(-len(data) // 200)
    assert a.stats.frames_sent == frames
    # One ACK a window, not one every few frames of a long burst (41 before bursts
    # waited for half a window, 93 before the silence timer restarted on each
    # frame); plus the reply, resent while a's ACK waits behind a's own queue.
    assert a.stats.frames_received <= frames // 32 + 6
    # goodput on the virtual line (not a timed assertion: the clock is simulated)
    assert len(data) / seconds > 0.9 * RATE


@pytest.mark.parametrize("half_duplex", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lossy_line_resends_only_what_was_lost(seed: int, half_duplex: bool) -> None:
    data = random.Random(seed).randbytes(50_000)
    at_b, at_a, _seconds, a = _run(data, b"x" * 3000, loss=0.05, seed=seed, half_duplex=half_duplex)
    assert at_b == data and at_a == b"x" * 3000
    assert a.stats.frames_resent < a.stats.frames_sent // 4


def test_sequence_numbers_wrap() -> None:
    data = random.Random(4).randbytes(70_000)
    at_b, _at_a, _seconds, _a = _run(data, b"", loss=0.02, payload=1, window=64, limit=200_000)
    assert at_b == data


def test_heavy_loss_still_delivers() -> None:
    data = random.Random(5).randbytes(5_000)
    at_b, _at_a, _seconds, a = _run(data, b"", loss=0.4, seed=5)
    assert at_b == data
    assert a.stats.timeouts > 0


def test_frames_of_another_epoch_are_ignored() -> None:
    a = arq.Arq(1, payload_bytes=10)
    b = arq.Arq(2, payload_bytes=10)
    a.write(b"hello")
    for frame in a.transmit(0.0):
        b.receive(frame, 0.0)
    assert b.take() == b"" and b.stats.foreign == 1


def test_padding_meets_a_minimum_frame_size() -> None:
    frame = arq.encode_data(arq.Data(3, 9, b"hi", poll=True), min_bytes=15)
    assert len(frame) == 15
    assert arq.decode(frame) == arq.Data(3, 9, b"hi", poll=True)
    ack = arq.encode_ack(arq.Ack(3, 9, frozenset({1, 5})), window=32, min_bytes=15)
    assert len(ack) == 15 and arq.decode(ack) == arq.Ack(3, 9, frozenset({1, 5}))


VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "frames.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["arq_data"], ids=lambda vector: vector["frame"])
def test_data_vectors_both_ways(vector: dict[str, Any]) -> None:
    """protocol.md 23.4's DATA vectors: encoded to the golden bytes, decoded back."""
    frame = arq.Data(
        vector["epoch"],
        vector["seq"],
        bytes.fromhex(vector["payload"]),
        poll=vector["poll"],
        fin=vector["fin"],
        ack=vector.get("ack"),
    )
    golden = bytes.fromhex(vector["frame"])
    assert arq.encode_data(frame, min_bytes=vector["min_bytes"]) == golden
    assert arq.decode(golden) == frame


@pytest.mark.parametrize("vector", VECTORS["arq_ack"], ids=lambda vector: vector["frame"])
def test_ack_vectors_both_ways(vector: dict[str, Any]) -> None:
    """protocol.md 23.4's ACK vectors (padding is bitmap bytes of frames not held)."""
    ack = arq.Ack(vector["epoch"], vector["expected"], frozenset(vector["held"]))
    golden = bytes.fromhex(vector["frame"])
    encoded = arq.encode_ack(ack, window=vector["window"], min_bytes=vector["min_bytes"])
    assert encoded == golden
    assert arq.decode(golden) == ack


@given(st.binary(max_size=300))
def test_decode_raises_only_frame_error(data: bytes) -> None:
    try:
        arq.decode(data)
    except FrameError:
        pass


def test_an_ack_rides_on_the_reply_written_while_it_is_held() -> None:
    a, b = (arq.Arq(5, payload_bytes=10) for _ in range(2))
    a.write(b"ping")
    (ping,) = a.transmit(0.0)
    b.receive(ping, 0.0)
    assert b.transmit(0.0) == []  # held for an ACK frame's line time
    b.write(b"pong")
    (pong,) = b.transmit(0.001)
    parsed = arq.decode(pong)
    assert isinstance(parsed, arq.Data) and parsed.ack == 1 and parsed.payload == b"pong"
    a.receive(pong, 0.01)
    assert a.flushed and a.take() == b"pong" and b.stats.acks_sent == 0


def test_an_ack_goes_alone_when_no_reply_comes_or_frames_are_held_out_of_order() -> None:
    a, b = (arq.Arq(5, payload_bytes=2, window=8) for _ in range(2))
    a.write(b"abcdef")
    first, _second, third = a.transmit(0.0)
    b.receive(first, 0.0)
    b.receive(third, 0.0)  # the second was lost: frame 2 is held beyond a hole
    b.write(b"reply")
    frames = [arq.decode(frame) for frame in b.transmit(0.001)]
    assert all(isinstance(frame, arq.Data) and frame.ack is None for frame in frames)
    due = b.deadline()
    assert due is not None
    (full,) = b.transmit(due)  # the bitmap says which, so a frame of its own
    assert arq.decode(full) == arq.Ack(5, 1, frozenset({1}))
    quiet = arq.Arq(5, payload_bytes=2)
    quiet.receive(first, 0.0)
    deadline = quiet.deadline()
    assert deadline is not None and deadline > 0.0
    (alone,) = quiet.transmit(deadline)
    assert arq.decode(alone) == arq.Ack(5, 1, frozenset())


def test_half_duplex_both_ways_sends_nothing_twice_on_a_clean_line() -> None:
    """Both sides send 64 KB on one half-duplex channel: each waits out the other's
    bursts, and every frame heard from the peer pushes the time-out back by its line time,
    so no time-out fires and nothing is resent (33 of each before that rule)."""
    data_a, data_b = random.Random(2).randbytes(64_000), random.Random(3).randbytes(64_000)
    at_b, at_a, _seconds, a = _run(data_a, data_b, loss=0.0, half_duplex=True)
    assert at_b == data_a and at_a == data_b
    assert a.stats.timeouts == 0 and a.stats.frames_resent == 0


def test_a_busy_peer_pushes_the_time_out_back_only_on_half_duplex() -> None:
    """A frame heard from the peer pushes the time-out back by its line time, at most a
    window of full frames per burst; on a full-duplex line it does not move."""
    for half_duplex in (False, True):
        timing = arq.LinkTiming(bytes_per_second=RATE, turnaround=0.2, half_duplex=half_duplex)
        a = arq.Arq(5, payload_bytes=100, window=4, timing=timing)
        peer = arq.Arq(5, payload_bytes=100, window=4, timing=timing)
        a.write(b"x" * 50)
        a.transmit(0.0)
        first = a._timeout_at  # (deadline() would show the ACK the peer's POLL draws)
        assert first is not None
        peer.write(b"y" * 1000)
        frames = peer.transmit(0.0)  # a burst of the peer's own (no POLL of ours answered)
        for frame in frames:
            a.receive(frame, 0.1)
        pushed = a._timeout_at
        assert pushed is not None
        if not half_duplex:
            assert pushed == first
            continue
        cap = 4 * (100 + arq.HEADER_BYTES + timing.frame_overhead) / RATE
        heard = sum(len(frame) + timing.frame_overhead for frame in frames) / RATE
        assert pushed == pytest.approx(first + min(heard, cap))


def test_on_half_duplex_data_waits_while_the_peer_is_mid_burst() -> None:
    """Heard in the middle of the peer's burst, a half-duplex side keeps its DATA back
    (the channel is the peer's); at the burst's POLL the DATA goes with a fresh ACK on
    it. A full-duplex side sends at once, with the ACK of the moment."""
    for half_duplex in (False, True):
        timing = arq.LinkTiming(bytes_per_second=RATE, turnaround=0.2, half_duplex=half_duplex)
        peer = arq.Arq(5, payload_bytes=100, window=8, timing=timing)
        side = arq.Arq(5, payload_bytes=100, window=8, timing=timing)
        peer.write(b"p" * 400)
        first, second, third, last = peer.transmit(0.0)  # the last one carries POLL
        side.receive(first, 0.1)
        side.write(b"reply")
        early = side.transmit(0.1)
        if not half_duplex:
            assert [arq.decode(frame) for frame in early] == [
                arq.Data(5, 0, b"reply", poll=True, ack=1)
            ]
            continue
        assert early == []  # mid-burst: nothing yet
        for frame in (second, third):
            side.receive(frame, 0.2)
            assert side.transmit(0.2) == []
        side.receive(last, 0.3)
        deadline = side.deadline()
        assert deadline is not None and deadline > 0.3  # the POLL's ACK is held for a reply
        (reply,) = side.transmit(deadline)
        assert arq.decode(reply) == arq.Data(5, 0, b"reply", poll=True, ack=4)


def _radio(draw_a: Any, draw_b: Any, *, limit: float) -> tuple[bytes, bytes, float]:
    """Two half-duplex stations on one channel with carrier sense and PERSIST 255 (as the
    Direwolf tests set it): a station keys up as soon as the channel seems clear, and two
    that key up within the carrier-detect delay both lose their transmissions."""
    detect = 0.05  # a station hears the other's carrier this long after it keys up
    timing = arq.LinkTiming(bytes_per_second=150.0, turnaround=0.4, half_duplex=True)
    ends = {
        name: arq.Arq(9, payload_bytes=200, window=16, timing=timing, draw=draw)
        for name, draw in (("a", draw_a), ("b", draw_b))
    }
    for end in ends.values():
        end.write(b"x" * 150)  # one frame each, queued at the same moment
        end.close()
    queue: dict[str, list[bytes]] = {"a": [], "b": []}
    air: dict[str, tuple[float, float, list[bytes]] | None] = {"a": None, "b": None}
    lost: dict[str, bool] = {"a": False, "b": False}
    got = {"a": bytearray(), "b": bytearray()}
    now = 0.0
    while now < limit:
        for name, other in (("a", "b"), ("b", "a")):
            end = ends[name]
            queue[name] += end.transmit(now)
            heard = air[other] is not None and air[other][0] <= now - detect  # type: ignore[index]
            if queue[name] and air[name] is None and not heard:
                frames, queue[name] = queue[name], []
                seconds = sum(len(frame) + 8 for frame in frames) / timing.bytes_per_second
                air[name] = (now, now + seconds, frames)
                lost[name] = False
                if air[other] is not None:
                    lost[name] = lost[other] = True  # both keyed up at once
        for name, other in (("a", "b"), ("b", "a")):
            sending = air[name]
            if sending is not None and sending[1] <= now:
                air[name] = None
                if not lost[name]:
                    for frame in sending[2]:
                        ends[other].receive(frame, now)
        for name in ("a", "b"):
            got[name] += ends[name].take()
        if all(end.eof and end.flushed for end in ends.values()):
            return bytes(got["a"]), bytes(got["b"]), now
        now = round(now + 0.01, 2)
    return bytes(got["a"]), bytes(got["b"]), now


def test_jittered_time_outs_break_up_repeated_collisions() -> None:
    """Two stations with one frame each, keyed up at once, collide. With equal time-outs
    they resend at the same moment and collide again, every time; the random share of
    each time-out (JITTER) sets them apart, and both streams get through."""
    at_a, at_b, _seconds = _radio(None, None, limit=120.0)
    assert at_a == at_b == b""  # colliding still after two minutes
    draw_a, draw_b = random.Random(1).random, random.Random(2).random
    at_a, at_b, seconds = _radio(draw_a, draw_b, limit=120.0)
    assert at_a == at_b == b"x" * 150
    assert seconds < 120.0


def _back_to_back(*, limit: float) -> tuple[bytes, bytes, int, arq.Arq]:
    """On the channel of `_radio`: a sends a message; b answers it (a STORED) 50 ms after
    taking it in, and a's next message is written at that same moment (the bench's
    messages back to back: the next one is sent as soon as the last is delivered).
    Returns what each side took in, the number of collisions, and a."""
    detect = 0.05
    timing = arq.LinkTiming(bytes_per_second=150.0, turnaround=0.4, half_duplex=True)
    ends = {name: arq.Arq(9, payload_bytes=200, window=16, timing=timing) for name in "ab"}
    ends["a"].write(b"m" * 100)
    writes: list[tuple[float, str, bytes]] = []
    queue: dict[str, list[bytes]] = {"a": [], "b": []}
    air: dict[str, tuple[float, float, list[bytes]] | None] = {"a": None, "b": None}
    lost = {"a": False, "b": False}
    got = {"a": bytearray(), "b": bytearray()}
    collisions = 0
    now = 0.0
    while now < limit:
        for at, name, data in [write for write in writes if write[0] <= now]:
            ends[name].write(data)
            writes.remove((at, name, data))
        for name, other in (("a", "b"), ("b", "a")):
            queue[name] += ends[name].transmit(now)
            heard = air[other] is not None and air[other][0] <= now - detect  # type: ignore[index]
            if queue[name] and air[name] is None and not heard:
                frames, queue[name] = queue[name], []
                seconds = sum(len(frame) + 8 for frame in frames) / timing.bytes_per_second
                air[name] = (now, now + seconds, frames)
                lost[name] = False
                if air[other] is not None:
                    lost[name] = lost[other] = True
                    collisions += 1
        for name, other in (("a", "b"), ("b", "a")):
            sending = air[name]
            if sending is not None and sending[1] <= now:
                air[name] = None
                if not lost[name]:
                    for frame in sending[2]:
                        ends[other].receive(frame, now)
        for name in "ab":
            taken = ends[name].take()
            if name == "b" and taken == b"m" * 100:
                reply_at = round(now + 0.05, 2)
                writes += [(reply_at, "b", b"STORED"), (reply_at, "a", b"n" * 100)]
            got[name] += taken
        done = got["b"] == b"m" * 100 + b"n" * 100 and got["a"] == b"STORED"
        if done and all(end.flushed and not end.owes_ack for end in ends.values()):
            return bytes(got["a"]), bytes(got["b"]), collisions, ends["a"]
        now = round(now + 0.01, 2)
    return bytes(got["a"]), bytes(got["b"]), collisions, ends["a"]


def test_on_half_duplex_new_data_waits_for_the_answer_to_our_poll() -> None:
    """A POLL hands the turn to the peer. The next message, written the moment the peer
    answers the last one, waits until that answer is heard, and then goes with the ACK on
    it: nothing keys up over the answer. (Sent at once, it collided with the answer and
    both sides waited out a time-out: 2.6-3 s per message through Direwolf at 9600.)"""
    at_a, at_b, collisions, a = _back_to_back(limit=60.0)
    assert at_b == b"m" * 100 + b"n" * 100 and at_a == b"STORED"
    assert collisions == 0
    assert a.stats.timeouts == 0 and a.stats.frames_resent == 0
