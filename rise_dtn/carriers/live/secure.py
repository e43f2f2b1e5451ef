"""An encrypted, authenticated byte stream over any asyncio reader/writer (Noise IK).

Each Noise message travels as a 2-byte big-endian length and the message;
session frames are cut into messages of at most 65,519 bytes of plaintext.
This module moves bytes; it never parses bundles or session frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from rise_dtn.core.errors import PeerError
from rise_dtn.core.handshake import (
    FEATURE_PUSH,
    MAX_PLAINTEXT_BYTES,
    Cipher,
    Initiator,
    Responder,
    takes_short_push,
)
from rise_dtn.core.identity import Identity

HANDSHAKE_TIMEOUT_SECONDS = 30  # a slowloris gets no more than this before any bundle moves


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    try:
        length = int.from_bytes(await reader.readexactly(2), "big")
        if length == 0:
            raise PeerError("link protocol error: empty message")
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return b""


def _frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


class SecureChannel:
    """Reader and writer in one: `read`, `write`, `drain`, `close`, as Link expects."""

    def __init__(
        self,
        cipher: Cipher,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer_features: int = 0,
    ) -> None:
        self._cipher = cipher
        self._reader = reader
        self._writer = writer
        # What the peer's handshake said it takes (handshake.FEATURES).
        self.peer_takes_push = bool(peer_features & FEATURE_PUSH)
        self.peer_takes_short_push = takes_short_push(peer_features)

    async def read(self, _size: int = -1) -> bytes:
        """The next message's plaintext; b'' once the link is closed."""
        message = await _read_message(self._reader)
        if not message:
            return b""
        return self._cipher.decrypt(message)

    def write(self, data: bytes) -> None:
        self.writelines((data,))

    def writelines(self, parts: Iterable[bytes]) -> None:
        """Seal `parts` as one stream, in messages filled to the brim (a frame's head
        and its payload share a message), slicing rather than joining the payload."""
        pieces: list[memoryview] = []
        filled = 0
        for part in parts:
            view = memoryview(part)
            while view:
                piece = view[: MAX_PLAINTEXT_BYTES - filled]
                pieces.append(piece)
                filled += len(piece)
                view = view[len(piece) :]
                if filled == MAX_PLAINTEXT_BYTES:
                    self._seal(pieces)
                    pieces, filled = [], 0
        if pieces:
            self._seal(pieces)

    def _seal(self, pieces: list[memoryview]) -> None:
        plaintext = b"".join(pieces)  # noise wants bytes: the one copy on the way out
        message = self._cipher.encrypt(plaintext)
        self._writer.writelines((len(message).to_bytes(2, "big"), message))

    async def drain(self) -> None:
        await self._writer.drain()

    def write_buffer_size(self) -> int:
        """Bytes written and not yet sent on (see link._drain_replies): a socket's, or what
        the writer below says (a serial line's ARQ)."""
        transport = getattr(self._writer, "transport", None)
        if transport is not None:
            return int(transport.get_write_buffer_size())
        return int(self._writer.write_buffer_size())  # type: ignore[attr-defined]

    def close(self) -> None:
        self._writer.close()


async def call(
    identity: Identity,
    remote_exchange_public: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> SecureChannel:
    """Open the channel as the caller; PeerError if the other side is not who we called."""
    initiator = Initiator(identity, remote_exchange_public)
    writer.write(_frame(initiator.first_message()))
    await writer.drain()
    reply = await asyncio.wait_for(_read_message(reader), HANDSHAKE_TIMEOUT_SECONDS)
    if not reply:
        raise PeerError("the node closed the link during the handshake (does it know us?)")
    cipher = initiator.finish(reply)
    return SecureChannel(cipher, reader, writer, peer_features=initiator.peer_features)


async def answer(
    identity: Identity, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[bytes, Responder]:
    """Read the caller's first message: its X25519 key, and the responder to accept with."""
    responder = Responder(identity)
    first = await asyncio.wait_for(_read_message(reader), HANDSHAKE_TIMEOUT_SECONDS)
    if not first:
        raise PeerError("the caller closed the link during the handshake")
    return responder.read_first(first), responder


def accept(
    responder: Responder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> SecureChannel:
    reply, cipher = responder.accept()
    writer.write(_frame(reply))
    return SecureChannel(cipher, reader, writer, peer_features=responder.peer_features)
