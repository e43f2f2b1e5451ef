"""The simulated radio channel between Direwolf TNCs: a process that tests/direwolf.py starts.

Usage: python tests/audiohub.py [--rate 44100] [--noise-std N --seed S]
       --station RX_PORT TX_FIFO RIG_PORT [--station ...]

Direwolf on a machine with no sound card writes its transmit audio
through an ALSA `file` plugin on the `null` PCM, which does not pace: a
whole transmission arrives at once, into the station's named pipe
TX_FIFO. This hub re-times it to real time and plays it to the other
stations: every tick (10 ms) it takes one tick of samples from each
station's transmit queue and sends each station, by UDP to
127.0.0.1:RX_PORT (Direwolf's `ADEVICE udp:PORT`), the sum of what the
*other* stations transmit, at a quarter of full scale (Direwolf's own
output is full scale; its input meter then reads about 50, the level it
asks for). A transmitting station hears silence (half duplex), and
silence flows between transmissions, or a receiver's carrier detect would
never drop.

The air never breaks a frame because a process was descheduled. The
audio of one transmission can reach the hub in pieces (Direwolf writes a
long one as it generates it), and a transmitter starved of the CPU
between two pieces would leave the queue dry in the middle of a frame;
padding that with silence would break the frame where no radio would.
So each station keys its PTT through a Hamlib rigctld (RIG_PORT, the
dummy rig; Direwolf's `PTT RIG 2`), and while a transmitting station's
queue is short of a tick and its PTT is still on, its audio is late: the
channel waits for it, sending nothing to anyone, with its clock stopped.
Direwolf writes all of a transmission's audio before it drops the PTT,
so once rigctld says the PTT is off, whatever the pipe holds is the rest.

It prints one JSON line, {"stations": N}, once its pipes are open and its
rigctld connections made, then runs until SIGTERM or until its parent
goes away. Samples are S16_LE mono. The numbers are from
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
MAX_QUEUE_SECONDS = 60  # transmit audio held per station; more is a runaway transmitter
READ_BYTES = 1 << 20
NOISE_TABLE_SECONDS = 2
# While a station's audio is late the channel waits on its pipe, and asks
# rigctld again this often whether the PTT is still on.
LATE_POLL_SECONDS = 0.005
# rigctld answers in well under a millisecond; past this it is gone (the hub exits).
RIG_TIMEOUT_SECONDS = 60.0


class Station:
    """One TNC on the channel: its receive port, its transmit pipe and its PTT."""

    def __init__(self, number: int, rx_port: int, tx_fifo: str, rig_port: int) -> None:
        self.name = f"station {number}"
        self.rx_address = ("127.0.0.1", rx_port)
        # Read and write: the pipe never reads as closed, whether Direwolf has
        # opened it yet or not, and Direwolf's open never waits for a reader.
        self.pipe = os.open(tx_fifo, os.O_RDWR | os.O_NONBLOCK)
        self.rig = socket.create_connection(("127.0.0.1", rig_port), timeout=RIG_TIMEOUT_SECONDS)
        self.rig_replies = self.rig.makefile("rb")
        self.queue = bytearray()
        self.chunk = b""  # what it transmits this tick
        self.playing = False
        self.late = False  # the channel is waiting for this station's audio

    def receive(self, max_queue_bytes: int) -> None:
        """Everything in the transmit pipe, into the queue."""
        while True:
            try:
                data = os.read(self.pipe, READ_BYTES)
            except BlockingIOError:
                return
            if len(self.queue) < max_queue_bytes:
                self.queue += data

    def keyed(self) -> bool:
        """Is the PTT on? (Hamlib's rigctl protocol: `t` answers 0 or 1.)"""
        self.rig.sendall(b"t\n")
        reply = self.rig_replies.readline().strip()
        if reply not in (b"0", b"1"):
            raise RuntimeError(f"{self.name}: rigctld answered {reply!r} to get_ptt")
        return reply == b"1"

    def waits_for_audio(self, tick_bytes: int, max_queue_bytes: int) -> bool:
        """True while this station transmits and the rest of its next tick is late.

        Asked only when its queue holds less than a tick, so rigctld hears from
        the hub about once a transmission. When the PTT is off, the pipe is
        read once more: all the audio was written before the PTT dropped.
        """
        if len(self.queue) >= tick_bytes or not (self.playing or self.queue):
            self.late = False  # its audio came: a later wait is a new one, with its note
            return False
        if self.keyed():
            if not self.late:
                note(f"{self.name} is late with {len(self.queue)} bytes queued: the channel waits")
            self.late = True
            return True
        self.late = False
        self.receive(max_queue_bytes)
        return False

    def next_chunk(self, tick_bytes: int) -> bytes:
        """One tick of this station's transmission, or b"" when it is silent.

        Short of a tick only at the very end of a transmission (its PTT is
        off): the rest of the tick is silence, after the transmission.
        """
        if not self.queue:
            if self.playing:
                self.playing = False
                note(f"{self.name} stops transmitting")
            return b""
        if not self.playing:
            self.playing = True
            note(f"{self.name} transmits {len(self.queue)} bytes of audio")
        whole = len(self.queue) - len(self.queue) % SAMPLE_BYTES
        chunk = bytes(self.queue[: min(tick_bytes, whole)])
        del self.queue[: len(chunk)]
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


def wait_for(stations: list[Station]) -> None:
    """Until one of the late stations' pipes has audio, or a poll's time has passed."""
    select.select([station.pipe for station in stations], [], [], LATE_POLL_SECONDS)


def run(rate: int, stations: list[Station], background: Background) -> None:
    tick_bytes = background.tick_bytes  # 882 at 44.1 kHz: one datagram
    silence = bytes(tick_bytes)
    max_queue_bytes = rate * SAMPLE_BYTES * MAX_QUEUE_SECONDS
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    parent = os.getppid()
    start, tick = time.monotonic(), 0
    while os.getppid() == parent:
        for station in stations:
            station.receive(max_queue_bytes)
        late = [
            station for station in stations if station.waits_for_audio(tick_bytes, max_queue_bytes)
        ]
        if late:  # the air holds still: no datagram, no tick, and no time owed after
            wait_for(late)
            start, tick = time.monotonic(), 0
            continue
        for station in stations:
            station.chunk = station.next_chunk(tick_bytes)
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
    parser.add_argument(
        "--station",
        nargs=3,
        action="append",
        required=True,
        metavar=("RX_PORT", "TX_FIFO", "RIG_PORT"),
        help="Direwolf's UDP audio port, its transmit pipe, its rigctld port",
    )
    arguments = parser.parse_args()
    tick_bytes = int(arguments.rate * TICK_SECONDS) * SAMPLE_BYTES
    background = Background(
        tick_bytes, arguments.rate, noise_std=arguments.noise_std, seed=arguments.seed
    )
    signal.signal(signal.SIGTERM, lambda _number, _frame: sys.exit(0))
    stations = [
        Station(number, int(rx_port), tx_fifo, int(rig_port))
        for number, (rx_port, tx_fifo, rig_port) in enumerate(arguments.station, start=1)
    ]
    print(json.dumps({"stations": len(stations)}), flush=True)
    run(arguments.rate, stations, background)


if __name__ == "__main__":
    main()
