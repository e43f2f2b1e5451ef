"""The simulated radio channel between Direwolf TNCs: a process that tests/direwolf.py starts.

Usage: python tests/audiohub.py [--rate 44100] [--noise-std N --seed S] RX_PORT [RX_PORT ...]

Direwolf on a machine with no sound card writes its transmit audio
through an ALSA `file` plugin on the `null` PCM, which does not pace: a
whole transmission arrives at once over TCP. This hub re-times it to real
time and plays it to the other stations: every tick (10 ms) it takes one
tick of samples from each station's transmit queue and sends each station,
by UDP to 127.0.0.1:RX_PORT (Direwolf's `ADEVICE udp:PORT`), the sum of
what the *other* stations transmit, at a quarter of full scale (Direwolf's
own output is full scale; its input meter then reads about 50, the level
it asks for). A transmitting station hears silence (half duplex), and
silence flows between transmissions, or a receiver's carrier detect would
never drop. The transmit leg is TCP so that a burst is never dropped.

It prints one JSON line, {"tx_ports": [...]} (127.0.0.1 listeners, one
per station, in the order of RX_PORT), then runs until SIGTERM or until
its parent goes away. Samples are S16_LE mono. The numbers are from
../shared/notes/direwolf-link.md, where this recipe was worked out.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import select
import signal
import socket
import sys
import time

TICK_SECONDS = 0.01
SAMPLE_BYTES = 2  # S16_LE mono
GAIN_SHIFT = 2  # a quarter of full scale, as an arithmetic shift
MAX_LAG_SECONDS = 0.5  # behind by more (a stalled machine): stop catching up, start afresh
# A transmission arrives in a burst faster than real time, but a read can catch
# it half-way; playing starts once this much is queued (or nothing more came
# for a tick), so a gap never opens in the middle of a frame.
PREBUFFER_SECONDS = 0.1
MAX_QUEUE_SECONDS = 60  # transmit audio held per station; more is a runaway transmitter
READ_BYTES = 65536
NOISE_TABLE_SECONDS = 2


class Station:
    def __init__(self, rx_port: int) -> None:
        self.rx_address = ("127.0.0.1", rx_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.connection: socket.socket | None = None
        self.queue = bytearray()
        self.chunk = b""  # what it transmits this tick
        self.playing = False
        self.fresh = False  # bytes arrived since the last tick

    @property
    def tx_port(self) -> int:
        return int(self.listener.getsockname()[1])

    def receive(self, max_queue_bytes: int) -> None:
        try:
            connection, _ = self.listener.accept()
        except BlockingIOError:
            pass
        else:  # Direwolf's pipe reconnected: the newest connection is the live one
            if self.connection is not None:
                self.connection.close()
            connection.setblocking(False)
            self.connection = connection
        while self.connection is not None:
            try:
                data = self.connection.recv(READ_BYTES)
            except BlockingIOError:
                return
            if not data:
                self.connection.close()
                self.connection = None
                return
            self.fresh = True
            if len(self.queue) < max_queue_bytes:
                self.queue += data

    def next_chunk(self, tick_bytes: int, prebuffer_bytes: int) -> bytes:
        """One tick of this station's transmission, or b"" when it is silent."""
        if not self.playing:
            self.playing = len(self.queue) >= prebuffer_bytes or (
                bool(self.queue) and not self.fresh
            )
            if self.playing:
                note(f"station {self.tx_port} transmits {len(self.queue)} bytes of audio")
        self.fresh = False
        if not self.playing:
            return b""
        whole = len(self.queue) - len(self.queue) % SAMPLE_BYTES
        chunk = bytes(self.queue[: min(tick_bytes, whole)])
        del self.queue[: len(chunk)]
        if not self.queue:
            self.playing = False
            note(f"station {self.tx_port} stops transmitting")
        return chunk + bytes(tick_bytes - len(chunk)) if chunk else b""


def note(line: str) -> None:
    """A line in hub.log: when each station keyed up, to tell collisions from losses."""
    print(f"{time.monotonic():.3f} {line}", file=sys.stderr, flush=True)


def samples_of(data: bytes) -> array.array[int]:
    samples = array.array("h", data)
    if sys.byteorder != "little":
        samples.byteswap()
    return samples


def mix(chunks: list[bytes], background: bytes) -> bytes:
    """The sum of `chunks` at a quarter scale over `background` (silence or noise),
    clipped to int16."""
    if not chunks:
        return background
    total = [0] * (len(background) // SAMPLE_BYTES)
    for chunk in chunks:
        for index, sample in enumerate(samples_of(chunk)):
            total[index] += sample
    mixed = array.array(
        "h",
        (
            max(-32768, min(32767, (value >> GAIN_SHIFT) + noise))
            for value, noise in zip(total, samples_of(background), strict=True)
        ),
    )
    if sys.byteorder != "little":
        mixed.byteswap()
    return mixed.tobytes()


class Background:
    """What a receiver hears when nobody transmits: silence, or Gaussian noise.

    Noise makes a lossy channel (at 1200 baud and a noise std of 6000 every
    frame still decodes, at 7000 about 40%, from 8000 none). It is drawn
    once, seeded, as a table of NOISE_TABLE_SECONDS, and each tick plays a
    slice from a random offset: per-sample Gaussian draws every tick would
    cost more CPU than everything else the hub does.
    """

    def __init__(self, tick_bytes: int, rate: int, *, noise_std: int, seed: int) -> None:
        self.tick_bytes = tick_bytes
        self.rng = random.Random(seed)
        self.table = b""
        if noise_std:
            noise = array.array(
                "h",
                (
                    max(-32768, min(32767, round(self.rng.gauss(0, noise_std))))
                    for _ in range(rate * NOISE_TABLE_SECONDS)
                ),
            )
            if sys.byteorder != "little":
                noise.byteswap()
            self.table = noise.tobytes()

    def next(self) -> bytes:
        if not self.table:
            return bytes(self.tick_bytes)
        offset = self.rng.randrange(0, len(self.table) - self.tick_bytes, SAMPLE_BYTES)
        return self.table[offset : offset + self.tick_bytes]


def run(rate: int, stations: list[Station], background: Background) -> None:
    tick_bytes = background.tick_bytes  # 882 at 44.1 kHz: one datagram
    silence = bytes(tick_bytes)
    max_queue_bytes = rate * SAMPLE_BYTES * MAX_QUEUE_SECONDS
    prebuffer_bytes = int(rate * PREBUFFER_SECONDS) * SAMPLE_BYTES
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    parent = os.getppid()
    start, tick = time.monotonic(), 0
    while os.getppid() == parent:
        for station in stations:
            station.receive(max_queue_bytes)
            station.chunk = station.next_chunk(tick_bytes, prebuffer_bytes)
        for station in stations:
            heard = [other.chunk for other in stations if other is not station and other.chunk]
            audio = silence if station.chunk else mix(heard, background.next())
            try:
                sender.sendto(audio, station.rx_address)
            except OSError:  # Direwolf not listening yet, or restarting: it missed silence
                pass
        tick += 1
        lag = time.monotonic() - (start + tick * TICK_SECONDS)
        if lag > MAX_LAG_SECONDS:
            start, tick = time.monotonic(), 0
        elif lag < 0:
            select.select([], [], [], -lag)  # pacing to real time, not waiting for an event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--noise-std", type=int, default=0, help="Gaussian noise, int16 units")
    parser.add_argument("--seed", type=int, default=0, help="of the noise")
    parser.add_argument("rx_ports", type=int, nargs="+")
    arguments = parser.parse_args()
    tick_bytes = int(arguments.rate * TICK_SECONDS) * SAMPLE_BYTES
    background = Background(
        tick_bytes, arguments.rate, noise_std=arguments.noise_std, seed=arguments.seed
    )
    signal.signal(signal.SIGTERM, lambda _number, _frame: sys.exit(0))
    stations = [Station(port) for port in arguments.rx_ports]
    print(json.dumps({"tx_ports": [station.tx_port for station in stations]}), flush=True)
    run(arguments.rate, stations, background)


if __name__ == "__main__":
    main()
