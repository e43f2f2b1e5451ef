"""KISS framing and the AX.25 UI header (docs/protocol.md sections 23.2 and 23.3).

Checked three ways: the escapes of the KISS spec written out by hand,
hand-written vectors, and an independent implementation from PyPI (kiss3
for KISS, its ax253 for AX.25 addresses) that only the tests use.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ax253 import Frame as Ax253Frame
from frame_streams import chunked, payloads
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from kiss import KISSDecode
from kiss.util import escape_special_codes

from rise_dtn.core import ax25, kiss
from rise_dtn.core.ax25 import Callsign
from rise_dtn.core.errors import FrameError, UsageError
from rise_dtn.core.framing import FEND, DropReason
from rise_dtn.core.kiss import KissDecoder, KissFrame
from tests.properties import examples, mutations, untrusted

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "frames.json").read_text())
PROPERTY = settings(max_examples=examples(200))
# kiss3 escapes the payload but not the command byte, so ports 12 (0xC0)
# and 13 with command 11 (0xDB) break its frames; 15 (0xF0) it mistakes
# for an NMEA sentence. Cross-checks use the ports it gets right.
KISS3_PORTS = st.integers(0, 11)

callsigns = st.builds(
    Callsign,
    call=st.from_regex(r"[A-Z0-9]{1,6}", fullmatch=True).filter(
        lambda call: call not in ax25.RESERVED_DESTINATIONS
    ),
    ssid=st.integers(0, 15),
)


def feed_all(decoder: KissDecoder, chunks: list[bytes]) -> list[KissFrame]:
    return [frame for chunk in chunks for frame in decoder.feed(chunk)]


def test_escapes_are_the_kiss_specs() -> None:
    assert kiss.encode(b"\xc0") == b"\xc0\x00\xdb\xdc\xc0"
    assert kiss.encode(b"\xdb") == b"\xc0\x00\xdb\xdd\xc0"
    assert kiss.encode(b"\xdc\xdd") == b"\xc0\x00\xdc\xdd\xc0"  # TFEND, TFESC alone are data
    assert kiss.encode(b"x", port=3, command=kiss.KissCommand.TX_DELAY) == b"\xc0\x31x\xc0"


@pytest.mark.parametrize("vector", VECTORS["kiss"], ids=lambda vector: vector["frame"])
def test_kiss_vector_both_ways(vector: dict[str, object]) -> None:
    frame = bytes.fromhex(str(vector["frame"]))
    port, command = int(str(vector["port"])), int(str(vector["command"]))
    expected = KissFrame(bytes.fromhex(str(vector["payload"])), port=port, command=command)
    assert kiss.encode(expected.payload, port=expected.port, command=expected.command) == frame
    assert kiss.decode(frame) == expected
    assert KissDecoder().feed(frame) == [expected]


def test_the_vectors_are_in_the_spec() -> None:
    spec = (ROOT / "docs" / "protocol.md").read_text()
    for vector in [*VECTORS["kiss"], *VECTORS["serial"]]:
        assert vector["frame"] in spec
    for vector in VECTORS["ax25_ui"]:
        assert vector["header"] in spec


@PROPERTY
@given(payload=payloads(), port=st.integers(0, 15), command=st.integers(0, 15), data=st.data())
def test_round_trip_in_any_chunks(
    payload: bytes, port: int, command: int, data: st.DataObject
) -> None:
    assume((port, command) != (15, 15))  # 0xFF is RETURN, refused below
    frame = kiss.encode(payload, port=port, command=command)
    assert kiss.decode(frame) == KissFrame(payload, port=port, command=command)
    decoder = KissDecoder()
    assert feed_all(decoder, data.draw(chunked(frame))) == [KissFrame(payload, port, command)]
    assert decoder.drops == {}


@PROPERTY
@given(payload=payloads(), port=KISS3_PORTS, data=st.data())
def test_kiss3_decodes_what_we_encode(payload: bytes, port: int, data: st.DataObject) -> None:
    # strip_df_start=False: kiss3's default strips leading zero bytes, payload included.
    theirs = KISSDecode(strip_df_start=False)
    frames = [
        frame
        for chunk in data.draw(chunked(kiss.encode(payload, port=port)))
        for frame in theirs.update(chunk)
    ]
    assert frames == [bytes([port << 4]) + payload]


@PROPERTY
@given(payload=payloads(), port=KISS3_PORTS, data=st.data())
def test_we_decode_what_kiss3_encodes(payload: bytes, port: int, data: st.DataObject) -> None:
    # kiss3's KISSProtocol.write builds exactly this (it needs an asyncio transport).
    theirs = b"\xc0" + bytes([port << 4]) + escape_special_codes(payload) + b"\xc0"
    assert feed_all(KissDecoder(), data.draw(chunked(theirs))) == [KissFrame(payload, port)]


@settings(max_examples=examples(300))
@given(garbage=st.binary(max_size=300), data=st.data())
def test_garbage_gives_only_frame_error_or_drops(garbage: bytes, data: st.DataObject) -> None:
    untrusted(lambda: kiss.decode(garbage), FrameError)
    untrusted(lambda: ax25.split_ui(garbage), FrameError)
    decoder = KissDecoder(max_frame_bytes=64)
    for frame in feed_all(decoder, data.draw(chunked(garbage))):
        assert len(frame.payload) <= 64
    assert decoder.buffered_bytes <= 2 * 65


@settings(max_examples=examples(200))
@given(payload=payloads(100), data=st.data())
def test_mutated_frames_give_only_frame_error(payload: bytes, data: st.DataObject) -> None:
    damaged = data.draw(mutations(kiss.encode(payload)))
    untrusted(lambda: kiss.decode(damaged), FrameError)
    feed_all(KissDecoder(), data.draw(chunked(damaged)))


def test_bad_escapes_oversize_and_unframed_bytes_are_counted() -> None:
    decoder = KissDecoder(max_frame_bytes=4)
    stream = b"tail of a frame\xc0\x00ab\xdbx\xc0" + kiss.encode(b"12345") + b"\xc0\xc0\xff\xc0"
    assert decoder.feed(stream + kiss.encode(b"ok")) == [KissFrame(b"ok")]
    assert decoder.drops == {
        DropReason.UNFRAMED: 1,
        DropReason.BAD_ESCAPE: 1,
        DropReason.OVERSIZE: 1,
    }
    with pytest.raises(FrameError):
        kiss.decode(b"\xc0\xff\xc0")  # RETURN is sent to a TNC, never received
    with pytest.raises(FrameError):
        kiss.decode(b"\xc0\xc0")


def test_encode_refuses_ports_and_commands_out_of_range() -> None:
    with pytest.raises(ValueError):
        kiss.encode(b"", port=16)
    with pytest.raises(ValueError):
        kiss.encode(b"", command=-1)
    with pytest.raises(ValueError, match="RETURN"):
        kiss.encode(b"", port=15, command=15)


# AX.25 UI header


@pytest.mark.parametrize("vector", VECTORS["ax25_ui"], ids=lambda vector: vector["source"])
def test_ui_header_vector_both_ways(vector: dict[str, str]) -> None:
    destination, source = Callsign.parse(vector["destination"]), Callsign.parse(vector["source"])
    header = bytes.fromhex(vector["header"])
    assert ax25.ui_header(destination=destination, source=source) == header
    assert ax25.split_ui(header + b"data") == (ax25.UiHeader(destination, source), b"data")


@PROPERTY
@given(destination=callsigns, source=callsigns, info=st.binary(max_size=300))
def test_ax253_reads_our_header(destination: Callsign, source: Callsign, info: bytes) -> None:
    frame = Ax253Frame.from_bytes(ax25.ui_header(destination=destination, source=source) + info)
    assert str(frame.destination) == str(destination)
    assert str(frame.source) == str(source)
    assert frame.path == []
    assert frame.info == info


@PROPERTY
@given(
    destination=callsigns,
    source=callsigns,
    # Distinct hops: ax253 marks every hop equal to the last one as last.
    path=st.lists(callsigns, max_size=8, unique_by=str),
    info=st.binary(max_size=300),
)
def test_we_read_ax253_ui_frames(
    destination: Callsign, source: Callsign, path: list[Callsign], info: bytes
) -> None:
    """ax253 leaves the C bits clear and may add digipeaters: both are read."""
    theirs = bytes(
        Ax253Frame.ui(str(destination), str(source), [str(hop) for hop in path] or None, info)
    )
    assert ax25.split_ui(theirs) == (ax25.UiHeader(destination, source), info)


def test_callsigns_from_the_config() -> None:
    assert Callsign.parse("n0call-7") == Callsign("N0CALL", 7)
    assert str(Callsign.parse("N0CALL")) == "N0CALL"
    for bad in ["", "TOOLONG1", "N0CALL-16", "N0CALL-", "N0-CALL-x", "N0 CA"]:
        with pytest.raises(UsageError):
            Callsign.parse(bad)
    with pytest.raises(UsageError, match="Direwolf"):
        ax25.ui_header(destination=Callsign("SPEECH"), source=Callsign("N0CALL"))


def test_frames_that_are_not_ui_frames() -> None:
    header = ax25.ui_header(destination=Callsign("APZRSE"), source=Callsign("N0CALL", 1))
    for bad in [header[:10], header[:14] + b"\x13\xf0", header[:15] + b"\xcc", bytes(80)]:
        with pytest.raises(FrameError):
            ax25.split_ui(bad)
    lowered = header[:1] + bytes([header[1] | 1]) + header[2:]
    with pytest.raises(FrameError, match="low bit"):
        ax25.split_ui(lowered)
    assert FEND not in header
