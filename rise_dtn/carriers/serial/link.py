"""The serial carrier's I/O: a port (device, pyserial URL or KISS TCP), its framing, and the
ARQ (core/arq.py) turned into the byte streams the live session runs on.

Over those streams runs exactly what TCP runs: the Noise IK handshake
(carriers/live/secure.py) and the live session (carriers/live/link.py),
through carriers/tcp/online.call_over and its answering side. So default
deny, confirmation only once durable and resume after a drop are the same
code as TCP's, and only the bytes below differ.

One port carries one session at a time. The caller picks a random epoch
(core/arq.py); the answering side (rise-serial) starts a new session when
a frame of a new epoch opens with sequence number 0, and ends the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from typing import cast

from rise_dtn.carriers.serial.profile import SerialSpec
from rise_dtn.core import arq as arqmod
from rise_dtn.core import ax25, kiss, serial_frame
from rise_dtn.core.errors import FrameError, PeerError, UsageError

READ_BYTES = 4096
FLUSH_SECONDS = 10.0  # how long a closing end waits for its last bytes to be acknowledged
# Direwolf refuses KISS frames under 15 bytes; padding to that costs little anywhere.
KISS_MIN_FRAME_BYTES = kiss.DIREWOLF_MIN_FRAME_BYTES


class Framer:
    """Frames of ARQ bytes to line bytes and back, serial or KISS (with an AX.25 header)."""

    def __init__(self, spec: SerialSpec) -> None:
        self._spec = spec
        self._header = b""
        if spec.mycall is not None and spec.dest is not None:
            self._header = ax25.ui_header(
                destination=ax25.Callsign.parse(spec.dest), source=ax25.Callsign.parse(spec.mycall)
            )
        max_frame = spec.profile.frame + arqmod.HEADER_BYTES + 64 + len(self._header)
        self._kiss = kiss.KissDecoder(max_frame_bytes=max(max_frame, 512)) if spec.kiss else None
        self._serial = (
            None
            if spec.kiss
            else serial_frame.SerialFrameDecoder(max_payload_bytes=max(max_frame, 512))
        )
        self.dropped = 0

    @property
    def min_frame_bytes(self) -> int:
        return max(0, KISS_MIN_FRAME_BYTES - len(self._header)) if self._spec.kiss else 0

    @property
    def overhead(self) -> int:
        return len(self._header) + (3 if self._spec.kiss else serial_frame.OVERHEAD_BYTES) + 2

    def encode(self, frame: bytes) -> bytes:
        if self._spec.kiss:
            return kiss.encode(self._header + frame, port=self._spec.kissport)
        return serial_frame.encode(frame)

    def feed(self, data: bytes) -> list[bytes]:
        if self._serial is not None:
            return self._serial.feed(data)
        assert self._kiss is not None
        frames: list[bytes] = []
        for item in self._kiss.feed(data):
            if item.command != kiss.KissCommand.DATA or item.port != self._spec.kissport:
                continue
            payload = item.payload
            if self._header:
                try:
                    _header, payload = ax25.split_ui(payload)
                except FrameError:
                    self.dropped += 1
                    continue
            frames.append(payload)
        return frames


class Port:
    """An open port: raw bytes in (`on_bytes`) and out (`send`)."""

    def __init__(self, spec: SerialSpec) -> None:
        self.spec = spec
        self.framer = Framer(spec)
        self.on_frame: Callable[[bytes], None] = lambda _frame: None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._closed = asyncio.Event()
        self._reading: asyncio.Task[None] | None = None
        self._serial: object | None = None
        self._read_transport: asyncio.BaseTransport | None = None
        self.bytes_received = 0  # noise included: tells a dead line from a garbled one

    async def open(self) -> None:
        spec = self.spec
        try:
            if spec.scheme == "kiss+tcp":
                from rise_dtn.carriers.address import Address, host_port

                host, port = host_port(Address("tcp", spec.where), default_port=8001)
                self._reader, self._writer = await asyncio.open_connection(host, port)
            elif "://" in spec.where and spec.where.split("://")[0] == "socket":
                from rise_dtn.carriers.address import Address, host_port

                host, port = host_port(Address("tcp", spec.where.split("://", 1)[1]))
                self._reader, self._writer = await asyncio.open_connection(host, port)
            else:
                await self._open_device()
        except OSError as exc:
            raise PeerError(f"cannot open {spec.where}: {exc.strerror or exc}") from None
        self._reading = asyncio.create_task(self._read())

    async def _open_device(self) -> None:
        import serial  # type: ignore[import-untyped]

        try:
            port = serial.serial_for_url(self.spec.where, baudrate=self.spec.baud, timeout=0)
        except (serial.SerialException, ValueError) as exc:
            raise PeerError(f"cannot open {self.spec.where}: {exc}") from None
        self._serial = port
        if not hasattr(port, "fileno"):
            raise UsageError(f"{self.spec.where}: only device paths and socket:// are supported")
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        os.set_blocking(fd, False)
        self._reader = asyncio.StreamReader()
        read_protocol = asyncio.StreamReaderProtocol(self._reader)
        self._read_transport, _protocol = await loop.connect_read_pipe(
            lambda: read_protocol, os.fdopen(os.dup(fd), "rb", 0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(os.dup(fd), "wb", 0)
        )
        self._writer = asyncio.StreamWriter(transport, protocol, self._reader, loop)

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(READ_BYTES)
                if not data:
                    break
                self.bytes_received += len(data)
                for frame in self.framer.feed(data):
                    self.on_frame(frame)
        except (ConnectionError, OSError):
            pass
        finally:
            self._closed.set()

    def send(self, frame: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(self.framer.encode(frame))

    @property
    def closed(self) -> asyncio.Event:
        return self._closed

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading
        if self._writer is not None:
            self._writer.close()
            if self._read_transport is not None:
                self._read_transport.close()  # a pipe transport has no close waiter
                await asyncio.sleep(0)  # let both transports close their descriptors
            else:
                with contextlib.suppress(ConnectionError, OSError):
                    await self._writer.wait_closed()
        if self._serial is not None:
            self._serial.close()  # type: ignore[attr-defined]


class ArqStream:
    """One session's reliable byte stream over a port: `reader` (an asyncio.StreamReader)
    and this object as its writer (write, writelines, drain, close)."""

    def __init__(self, port: Port, epoch: int) -> None:
        spec = port.spec
        timing = arqmod.LinkTiming(
            bytes_per_second=spec.bytes_per_second,
            turnaround=spec.profile.turnaround,
            frame_overhead=port.framer.overhead,
            half_duplex=spec.profile.half_duplex,
        )
        self.arq = arqmod.Arq(
            epoch,
            payload_bytes=spec.profile.frame,
            window=spec.profile.window,
            timing=timing,
            min_frame_bytes=port.framer.min_frame_bytes,
            give_up=spec.give_up_seconds,
            draw=random.random,
        )
        self.port = port
        self.reader = asyncio.StreamReader()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._ended = False
        self.bad_frames = 0
        self._pump = asyncio.create_task(self._run())

    @property
    def epoch(self) -> int:
        return self.arq.epoch

    def on_frame(self, frame: bytes) -> None:
        try:
            self.arq.receive(frame, self._loop.time())
        except FrameError:
            self.bad_frames += 1
            return
        self._wake.set()

    # -- the writer side (what secure.py and the live link call)
    def write(self, data: bytes) -> None:
        self.arq.write(bytes(data))
        self._wake.set()

    def writelines(self, parts: object) -> None:
        for part in cast("list[bytes]", parts):
            self.arq.write(bytes(part))
        self._wake.set()

    def write_buffer_size(self) -> int:
        """Bytes written and not yet acknowledged by the peer."""
        return self.arq.buffered

    async def drain(self) -> None:
        high = self.arq.window * self.arq.payload_bytes * 2
        while self.arq.buffered > high and not self._ended:
            self._progress.clear()
            await self._progress.wait()
        if self._ended and not self.arq.flushed:
            raise ConnectionError("the serial link is down")

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.arq.close()
        self._wake.set()

    def is_closing(self) -> bool:
        return self._ended

    async def wait_closed(self) -> None:
        return None

    async def finish(self, timeout: float = FLUSH_SECONDS) -> None:
        """Close, and wait (bounded) until the peer has acknowledged our last bytes and
        sent its own end (FIN), which our pump acknowledges before we return.

        Waiting for the peer's FIN too, not only for our own to be acknowledged,
        is what lets the side that hangs up last stop at once: the one that
        hangs up first has acknowledged its end, so it is not left resending
        it to nobody until it gives up.
        """
        self.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self._ended and not (
                    self.arq.flushed and self.arq.eof and not self.arq.owes_ack
                ):
                    self._progress.clear()
                    await self._progress.wait()

    def end(self) -> None:
        """Stop for good (a new session took the port, or it closed)."""
        if not self._ended:
            self._ended = True
            if not self.reader.at_eof():
                self.reader.feed_eof()
            self._progress.set()
            self._pump.cancel()

    async def _run(self) -> None:
        try:
            while True:
                now = self._loop.time()
                for frame in self.arq.transmit(now):
                    self.port.send(frame)
                data = self.arq.take()
                if data:
                    self.reader.feed_data(data)
                if self.arq.eof and not self.reader.at_eof():
                    self.reader.feed_eof()
                self._progress.set()
                if self.arq.dead(now) or self.port.closed.is_set():
                    self.reader.set_exception(ConnectionError(self._silence()))
                    self._ended = True
                    return
                deadline = self.arq.deadline()
                wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - now))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            self._ended = True
            self._progress.set()

    def _silence(self) -> str:
        """Why the link is given up. A peer never heard at all is most often no peer (no
        rise-serial there, another port, another baud rate, the radio off): say so, since
        the user otherwise waits `giveup` seconds for a bare time-out."""
        spec = self.port.spec
        if self.arq.stats.frames_received or self.port.closed.is_set():
            return "the serial link went silent"
        waited = f"{spec.give_up_seconds:g} s"
        baud = (
            "" if spec.scheme == "kiss+tcp" else f", with the same baud= ({spec.baud}) at both ends"
        )
        if self.port.bytes_received == 0:
            return (
                f"nothing answered on {spec.where} in {waited}: is rise-serial running at the"
                f" other end, is this the right port{baud}, and is the radio or modem on?"
            )
        return (
            f"only noise on {spec.where} in {waited} ({self.port.bytes_received} bytes, no"
            f" frame): does the other end use the same baud= ({spec.baud}) and link profile?"
        )


def writer_of(stream: ArqStream) -> asyncio.StreamWriter:
    """The stream as the writer type call_over and secure.py are annotated with."""
    return cast("asyncio.StreamWriter", stream)


def new_epoch() -> int:
    return random.randrange(1, 256)
