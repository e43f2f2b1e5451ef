"""Bundles as mail (core/mailpart.py, core/mailreader.py): round trips, garbage, the vector.

The invariants: any bundle, split at any size, read back in any order and
fed in chunks of any size, comes back byte for byte; any garbage, mutation
or truncation of a mail gives only `MailError` with the fault it names,
never another exception; nothing in a mail names rise-dtn.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import hashlib
import io
import itertools
import json
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rise_dtn.core.errors import BundleError, UsageError
from rise_dtn.core.mailpart import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MailError,
    MailFault,
    MailKeys,
    MailStyle,
    PartHeader,
    encode,
    is_ours,
)
from rise_dtn.core.mailreader import Assembly, MailReader, read_part
from tests.properties import mutations, untrusted

KEYS = MailKeys.derive(bytes(range(32)))
OTHER_KEYS = MailKeys.derive(bytes(32))
SENDER = "maria.lopez@example.org"
RECIPIENT = "j.smith@example.net"
NOW = 1_700_000_000
VECTOR = Path(__file__).resolve().parents[1] / "vectors" / "mail.json"


def counting_random(seed: bytes = b"") -> Callable[[int], bytes]:
    """Deterministic 'random' bytes: the caller's source of randomness, fixed for tests."""
    counter = itertools.count()

    def draw(size: int) -> bytes:
        out = b""
        while len(out) < size:
            out += hashlib.sha256(seed + next(counter).to_bytes(8, "big")).digest()
        return out[:size]

    return draw


def mails_for(
    data: bytes, *, style: MailStyle | None = None, keys: MailKeys = KEYS, seed: bytes = b""
) -> list[bytes]:
    out = []
    for mail in encode(
        io.BytesIO(data),
        len(data),
        keys=keys,
        style=style or MailStyle(),
        sender=SENDER,
        recipient=RECIPIENT,
        now=NOW,
        random_bytes=counting_random(seed),
    ):
        raw = b"".join(mail.chunks)
        assert len(raw) == mail.size_bytes
        assert is_ours(mail.message_id, keys)
        assert email.message_from_bytes(raw)["Message-ID"] == mail.message_id
        out.append(raw)
    return out


def pieces(raw: bytes, size: int) -> Iterator[bytes]:
    return (raw[start : start + size] for start in range(0, len(raw), size))


def reassemble(mails: list[bytes], *, keys: MailKeys = KEYS, feed_bytes: int = 4096) -> bytes:
    sink = io.BytesIO()
    assembly: Assembly | None = None
    for raw in mails:
        header = read_part(pieces(raw, feed_bytes), keys, sink)
        assembly = assembly or Assembly(header)
        assembly.add(header)
    assert assembly is not None and assembly.complete and not assembly.missing
    return sink.getvalue()[: assembly.first.total_bytes]


@given(
    data=st.binary(max_size=3000),
    parts=st.integers(1, 12),  # how many parts, roughly: each one is a whole mail to build
    extra_bytes=st.integers(0, 100),
    feed_bytes=st.integers(1, 300),
    order=st.randoms(use_true_random=False),
)
def test_round_trip_any_size_split_and_order(
    data: bytes, parts: int, extra_bytes: int, feed_bytes: int, order: Any
) -> None:
    part_bytes = max(1, len(data) // parts) + extra_bytes
    mails = mails_for(data, style=MailStyle(part_bytes=part_bytes))
    assert len(mails) == max(1, -(-len(data) // part_bytes))
    order.shuffle(mails)
    assert reassemble(mails, feed_bytes=feed_bytes) == data


@given(
    subject=st.text(max_size=80),
    filename=st.text(max_size=40),
    text=st.text(max_size=300),
)
def test_any_style_round_trips_or_is_refused(subject: str, filename: str, text: str) -> None:
    """A style is refused up front (UsageError: a control character, a line break) or works."""
    try:
        style = MailStyle(subject=subject, filename=filename, text=text, part_bytes=100)
        mails = mails_for(b"payload " * 40, style=style)
    except UsageError:
        return
    assert reassemble(mails) == b"payload " * 40


def test_nothing_names_rise_dtn_or_a_node() -> None:
    """No header, boundary or name says what the mail is, and the attachment's bytes do
    not show the bundle's own clear magic: they are masked."""
    bundle = b"RSB\x01 cleartext-looking bundle start" * 50
    for raw in mails_for(bundle, style=MailStyle(part_bytes=500)):
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        (attachment,) = parsed.iter_attachments()  # type: ignore[attr-defined]
        clear = raw.replace(attachment.get_payload().encode(), b"").lower()
        assert b"rise" not in clear and b"bundle" not in clear and b"rsb" not in clear
        assert b"RSB" not in attachment.get_content()
        assert parsed["Subject"] == "Files"
        assert attachment.get_filename() == "data.bin"
        assert set(parsed.keys()) == {
            "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
        }  # fmt: skip


def test_default_part_fits_a_25_mb_provider() -> None:
    style = MailStyle()
    part = style.bundle_bytes_per_part()
    mail = next(encode(
        io.BytesIO(), part, keys=KEYS, style=style, sender=SENDER, recipient=RECIPIENT,
        now=NOW, random_bytes=counting_random(),
    ))  # fmt: skip
    assert DEFAULT_MAX_MESSAGE_BYTES - 64 * 1024 <= mail.size_bytes <= DEFAULT_MAX_MESSAGE_BYTES
    assert part == 18_221_235  # docs/protocol.md section 24.2


class Repeating(io.RawIOBase):
    """A large bundle that is never in memory: `size` bytes of a repeating pattern."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(range(256)) * (count // 256) + bytes(range(count % 256))
        self.left -= count
        return count


class Digest(io.RawIOBase):
    """A sink that keeps only a hash and the highest offset written."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        assert offset == self.position, "parts are read in order here"
        return offset

    def write(self, data: Any) -> int:
        self.hash.update(data)
        self.position += len(data)
        return len(data)


def test_large_bundle_streams_in_constant_memory() -> None:
    size = 12 * 1024 * 1024
    style = MailStyle(part_bytes=5 * 1024 * 1024)
    sink = Digest()
    tracemalloc.start()
    try:
        for mail in encode(
            io.BufferedReader(Repeating(size)), size, keys=KEYS, style=style, sender=SENDER,
            recipient=RECIPIENT, now=NOW, random_bytes=counting_random(),
        ):  # fmt: skip
            read_part(mail.chunks, KEYS, sink)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256()
    reference = io.BufferedReader(Repeating(size))
    while chunk := reference.read(1 << 20):
        expected.update(chunk)
    assert sink.hash.digest() == expected.digest()
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte bundle"


def fault_of(raw: bytes, keys: MailKeys = KEYS) -> MailFault | None:
    try:
        read_part([raw], keys, io.BytesIO())
    except MailError as error:
        assert isinstance(error, BundleError)
        assert "\n" not in error.message
        return error.fault
    return None


@given(garbage=st.binary(max_size=2000), feed_bytes=st.integers(1, 500))
def test_garbage_gives_only_mail_error(garbage: bytes, feed_bytes: int) -> None:
    untrusted(lambda: read_part(pieces(garbage, feed_bytes), KEYS, io.BytesIO()), MailError)


GOOD = mails_for(bytes(range(256)) * 3, style=MailStyle(part_bytes=500))


@given(content=st.binary(max_size=400), prefix=st.sampled_from([b"", b"keep"]))
def test_random_attachment_in_a_sound_mail_gives_only_mail_error(
    content: bytes, prefix: bytes
) -> None:
    """Past the MIME layer: an attachment of any bytes (our salt and header prefix kept
    or not) reaches the part header and MAC checks, which refuse it."""
    good = GOOD[0]
    start = good.index(b"\r\n\r\n", good.index(b"application/octet-stream")) + 4
    end = good.rindex(b"\r\n--")
    if prefix:
        original = base64.b64decode(good[start:end])
        content = original[: len(original) // 2] + content
    mail = good[:start] + base64.encodebytes(content).replace(b"\n", b"\r\n") + good[end + 2 :]
    untrusted(lambda: read_part([mail], KEYS, io.BytesIO()), MailError)


@given(st.data())
def test_mutated_mail_gives_only_mail_error_or_the_same_part(data: st.DataObject) -> None:
    good = data.draw(st.sampled_from(GOOD))
    mutated = data.draw(mutations(good))
    sink = io.BytesIO()
    header = untrusted(lambda: read_part([mutated], KEYS, sink), MailError)
    if header is not None:  # a change the part does not depend on (a header, the text)
        original = io.BytesIO()
        assert read_part([good], KEYS, original) == header
        assert sink.getvalue() == original.getvalue()


@given(st.data())
def test_truncated_mail_is_truncated(data: st.DataObject) -> None:
    good = data.draw(st.sampled_from(GOOD))
    last_base64 = good.rindex(b"\r\n--") - 1  # the last character of the attachment
    cut = data.draw(st.integers(0, last_base64))
    assert fault_of(good[:cut]) is MailFault.TRUNCATED


def test_foreign_key_is_foreign() -> None:
    assert fault_of(GOOD[0], OTHER_KEYS) is MailFault.FOREIGN
    message_id = email.message_from_bytes(GOOD[0])["Message-ID"]
    assert is_ours(message_id, KEYS) and not is_ours(message_id, OTHER_KEYS)


@given(st.text(max_size=200))
def test_is_ours_never_raises(message_id: str) -> None:
    assert is_ours(message_id, KEYS) is False


def test_duplicate_part_is_refused() -> None:
    headers = [read_part([raw], KEYS, io.BytesIO()) for raw in GOOD]
    assembly = Assembly(headers[0])
    assembly.add(headers[0])
    with pytest.raises(MailError) as duplicate:
        assembly.add(headers[0])
    assert duplicate.value.fault is MailFault.DUPLICATE
    assert assembly.missing == [1] and not assembly.complete


def test_part_of_another_transfer_is_refused() -> None:
    first = read_part([GOOD[0]], KEYS, io.BytesIO())
    other = read_part([mails_for(bytes(768), seed=b"x", style=MailStyle(part_bytes=500))[1]],
                      KEYS, io.BytesIO())  # fmt: skip
    with pytest.raises(MailError) as refused:
        Assembly(first).add(other)
    assert refused.value.fault is MailFault.MALFORMED


def test_a_foreign_mail_with_our_shape_is_not_ours() -> None:
    """An ordinary mail with an attachment, as any client sends it."""
    mail = email.message.EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = "Files", SENDER, RECIPIENT
    mail["Message-ID"] = "<abcdefghijklmnopqrstuvwxyz234567@example.org>"
    mail.set_content("see attached")
    mail.add_attachment(bytes(2000), maintype="application", subtype="octet-stream",
                        filename="data.bin")  # fmt: skip
    raw = mail.as_bytes(policy=email.policy.SMTP)
    assert not is_ours(mail["Message-ID"], KEYS)
    assert fault_of(raw) is MailFault.FOREIGN


def test_reader_header_is_known_before_the_bundle_bytes() -> None:
    reader = MailReader(KEYS)
    raw = GOOD[1]
    out = b""
    for piece in pieces(raw, 10):
        out += reader.feed(piece)
        if out:
            assert reader.header is not None and reader.header.index == 1
    assert reader.finish() == reader.header
    assert out == (bytes(range(256)) * 3)[500:]


def test_message_id_takes_the_domain_of_a_named_sender() -> None:
    mail = next(encode(
        io.BytesIO(b"x"), 1, keys=KEYS, style=MailStyle(), sender="Maria <maria@example.org>",
        recipient=RECIPIENT, now=NOW, random_bytes=counting_random(),
    ))  # fmt: skip
    assert mail.message_id.endswith("@example.org>") and is_ours(mail.message_id, KEYS)
    assert email.message_from_bytes(b"".join(mail.chunks))["From"] == "Maria <maria@example.org>"


def test_an_address_with_a_line_break_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        next(encode(
            io.BytesIO(b"x"), 1, keys=KEYS, style=MailStyle(), sender="a@example.org\r\nBcc: x",
            recipient=RECIPIENT, now=NOW, random_bytes=counting_random(),
        ))  # fmt: skip


def test_sizes_out_of_range_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        MailStyle(part_bytes=0).bundle_bytes_per_part()
    with pytest.raises(UsageError):
        MailStyle(max_message_bytes=1000).bundle_bytes_per_part()
    with pytest.raises(UsageError):
        MailKeys.derive(b"short")
    with pytest.raises(UsageError):  # more parts than the header's 32-bit count holds
        next(encode(
            io.BytesIO(), 1 << 40, keys=KEYS, style=MailStyle(part_bytes=1), sender=SENDER,
            recipient=RECIPIENT, now=NOW, random_bytes=counting_random(),
        ))  # fmt: skip


def test_vector() -> None:
    """The known-answer mail of docs/protocol.md section 24, checked both ways."""
    vector = json.loads(VECTOR.read_text())
    keys = MailKeys.derive(bytes.fromhex(vector["shared_key"]))
    assert vector["keys"] == {"tag": keys.tag.hex(), "mask": keys.mask.hex(), "mac": keys.mac.hex()}
    bundle = bytes.fromhex(vector["bundle"])
    draws = iter(bytes.fromhex(draw) for draw in vector["random_draws"])
    style = MailStyle(**vector["style"])
    mail = next(encode(
        io.BytesIO(bundle), len(bundle), keys=keys, style=style, sender=vector["sender"],
        recipient=vector["recipient"], now=vector["now"], random_bytes=lambda _size: next(draws),
    ))  # fmt: skip
    raw = b"".join(mail.chunks)
    assert mail.message_id == vector["message_id"]
    assert mail.header.encode().hex() == vector["part_header"]
    assert raw.decode() == "".join(vector["mail"])
    attachment = email.message_from_bytes(raw).get_payload()[1]  # type: ignore[index]
    assert attachment.get_payload(decode=True).hex() == vector["attachment"]
    sink = io.BytesIO()
    assert read_part([raw], keys, sink) == PartHeader(
        bytes.fromhex(vector["random_draws"][0]), 0, 1, len(bundle), style.bundle_bytes_per_part()
    )
    assert sink.getvalue() == bundle
