"""The serial frame format (docs/protocol.md section 23.1): vectors, round trips, garbage.

The decoder's promises: every frame sent intact comes out, whatever the
chunking and whatever garbage lies between frames; a damaged frame is
dropped and counted, never delivered and never raised; memory stays under
twice the frame limit.
"""

from __future__ import annotations

import binascii
import json
from pathlib import Path

import pytest
from frame_streams import chunked, payloads
from hypothesis import given, settings
from hypothesis import strategies as st

from rise_dtn.core import serial_frame
from rise_dtn.core.errors import FrameError
from rise_dtn.core.framing import FEND, DropReason
from rise_dtn.core.serial_frame import SerialFrameDecoder
from tests.properties import examples, mutations, untrusted

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "frames.json").read_text())["serial"]
PROPERTY = settings(max_examples=examples(200))


def feed_all(decoder: SerialFrameDecoder, chunks: list[bytes]) -> list[bytes]:
    return [payload for chunk in chunks for payload in decoder.feed(chunk)]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector["payload"] or "empty")
def test_vector_both_ways(vector: dict[str, str]) -> None:
    payload, frame = bytes.fromhex(vector["payload"]), bytes.fromhex(vector["frame"])
    assert serial_frame.encode(payload) == frame
    assert serial_frame.decode(frame) == payload
    # Rebuilt from the spec alone: binascii's CRC-32, not the module's zlib call.
    body = b"\x01" + payload
    unstuffed = (body + binascii.crc32(body).to_bytes(4, "big")).replace(b"\xdb", b"\xdb\xdd")
    assert frame == b"\xc0" + unstuffed.replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def test_the_vectors_are_in_the_spec() -> None:
    spec = (ROOT / "docs" / "protocol.md").read_text()
    for vector in VECTORS:
        assert vector["frame"] in spec


@PROPERTY
@given(payload=payloads(), data=st.data())
def test_round_trip_in_any_chunks(payload: bytes, data: st.DataObject) -> None:
    frame = serial_frame.encode(payload)
    assert serial_frame.decode(frame) == payload
    decoder = SerialFrameDecoder()
    assert feed_all(decoder, data.draw(chunked(frame))) == [payload]
    assert decoder.drops == {}


@PROPERTY
@given(
    frames=st.lists(st.tuples(payloads(200), st.binary(max_size=40)), min_size=1, max_size=5),
    data=st.data(),
)
def test_garbage_between_frames_loses_no_frame(
    frames: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    """Each frame starts with a FEND, so garbage before it ends there and is dropped."""
    stream = b"".join(garbage + serial_frame.encode(payload) for payload, garbage in frames)
    decoder = SerialFrameDecoder()
    assert feed_all(decoder, data.draw(chunked(stream))) == [payload for payload, _ in frames]
    assert sum(decoder.drops.values()) <= sum(garbage.count(FEND) + 1 for _, garbage in frames)


@settings(max_examples=examples(300))
@given(payload=payloads(100), data=st.data())
def test_a_damaged_frame_is_dropped_not_delivered(payload: bytes, data: st.DataObject) -> None:
    """Any mutation of a frame: only FrameError one-shot; never a wrong payload streamed."""
    damaged = data.draw(mutations(serial_frame.encode(payload)))
    assert untrusted(lambda: serial_frame.decode(damaged), FrameError) in (None, payload)
    decoder = SerialFrameDecoder()
    delivered = feed_all(decoder, [*data.draw(chunked(damaged)), bytes([FEND])])
    assert set(delivered) <= {payload}


@settings(max_examples=examples(300))
@given(garbage=st.binary(max_size=300), data=st.data())
def test_garbage_gives_only_frame_error_or_drops(garbage: bytes, data: st.DataObject) -> None:
    untrusted(lambda: serial_frame.decode(garbage), FrameError)
    decoder = SerialFrameDecoder(max_payload_bytes=64)
    feed_all(decoder, data.draw(chunked(garbage)))
    assert decoder.buffered_bytes <= 2 * (64 + 5)


def test_a_corrupted_frame_is_counted_as_bad_checksum() -> None:
    frame = bytearray(serial_frame.encode(b"hello, neighbour"))
    frame[5] ^= 0x01
    decoder = SerialFrameDecoder()
    assert decoder.feed(bytes(frame) + serial_frame.encode(b"next")) == [b"next"]
    assert decoder.drops == {DropReason.BAD_CHECKSUM: 1}


def test_joining_mid_frame_drops_the_tail_and_resynchronises() -> None:
    frame = serial_frame.encode(b"first") + serial_frame.encode(b"second")
    decoder = SerialFrameDecoder()
    assert decoder.feed(frame[3:]) == [b"second"]
    assert decoder.drops == {DropReason.UNFRAMED: 1}


def test_an_endless_frame_is_capped_and_the_next_frame_still_arrives() -> None:
    decoder = SerialFrameDecoder(max_payload_bytes=100)
    decoder.feed(bytes([FEND]))
    for _ in range(1000):
        decoder.feed(b"x" * 1000)
        assert decoder.buffered_bytes <= 2 * (100 + 5)
    assert decoder.feed(serial_frame.encode(b"after")) == [b"after"]
    assert decoder.drops == {DropReason.OVERSIZE: 1}


def test_frame_limits_and_versions() -> None:
    decoder = SerialFrameDecoder(max_payload_bytes=10)
    assert decoder.feed(serial_frame.encode(bytes(10))) == [bytes(10)]
    assert decoder.feed(serial_frame.encode(bytes(11))) == []
    assert decoder.feed(b"\xc0\x01\x02\xc0") == []
    body = b"\x02payload"
    version_2 = b"\xc0" + body + binascii.crc32(body).to_bytes(4, "big") + b"\xc0"
    assert decoder.feed(version_2) == []
    assert decoder.drops == {
        DropReason.OVERSIZE: 1,
        DropReason.TOO_SHORT: 1,
        DropReason.UNKNOWN_VERSION: 1,
    }
    with pytest.raises(FrameError, match="unknown serial frame version"):
        serial_frame.decode(version_2)
    with pytest.raises(FrameError, match="over 10 bytes"):
        serial_frame.decode(serial_frame.encode(bytes(11)), max_payload_bytes=10)
