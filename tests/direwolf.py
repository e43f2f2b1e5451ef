"""Two real Direwolf 1.6 software TNCs on a simulated radio channel, for the packet-radio tests.

    KISS TCP -> direwolf A --audio, named pipe--> hub (audiohub.py) --UDP--> direwolf B -> KISS
                     `--PTT--> rigctld A <--PTT on?--'           (and the same the other way)

The recipe and its pitfalls are in ../shared/notes/direwolf-link.md: with
no sound card, Direwolf reads its receive audio from UDP (`ADEVICE
udp:PORT`) and writes its transmit audio through an ALSA `file` plugin on
the `null` PCM into a named pipe that the hub holds open. The hub re-times
the audio to real time and plays each station what the other transmits.
Each station keys its PTT through a Hamlib rigctld of its own (the dummy
rig, `PTT RIG 2`): the hub asks it whether a transmission whose audio ran
short is over or only late, and waits for late audio instead of breaking
the frame with silence (tests/audiohub.py says why).

Like tests/postgres.py: Direwolf, rigctld and socat are found, or installed
with apt-get when we are root; only when that cannot be done are the radio
tests skipped, with one line saying why. Start-up is bounded (the KISS
ports must accept within a deadline; a start that fails, say because a
free port was taken meanwhile, is retried with new ports) and teardown
is complete: each Direwolf runs in its own process group, which is killed
with everything in it.

Direwolf 1.6 binds its KISS and UDP audio ports on every interface, with
no option to do otherwise; the tests only ever connect to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rise_dtn.core import kiss
from rise_dtn.core.kiss import KissDecoder, KissFrame

HUB = Path(__file__).resolve().parent / "audiohub.py"
REAPER = Path(__file__).resolve().parent / "reaper.py"  # leaves no zombies behind Direwolf
INSTALL_TIMEOUT_SECONDS = 900
START_DEADLINE_SECONDS = 30.0  # Direwolf opens its ports in well under a second when idle
START_ATTEMPTS = (
    3  # a free port can be taken by another process before Direwolf or rigctld binds it
)
STOP_DEADLINE_SECONDS = 5.0
KISS_PORT_RANGE = (20000, 30000)
POLL_SECONDS = 0.05  # how often a start-up or teardown poll looks again, until its deadline


class Unavailable(Exception):
    """Direwolf cannot be had on this machine; the message is the skip line."""


@dataclasses.dataclass(frozen=True, slots=True)
class Modem:
    """A Direwolf modem and the audio rate it needs (9600 baud wants 48 kHz)."""

    baud: int
    sample_rate: int


AFSK_1200 = Modem(1200, 44100)
G3RUH_9600 = Modem(9600, 48000)
# Channel access much faster than Direwolf 1.6's defaults (30, 10, 10, 63):
# the tests wait for every key-up, and there are only two stations.
FAST_TIMING = "TXDELAY 5\nTXTAIL 2\nSLOTTIME 1\nPERSIST 255\n"


@dataclasses.dataclass
class Station:
    call: str
    kiss_port: int
    directory: Path
    process: subprocess.Popen[bytes]
    tx_fifo: Path  # the named pipe its transmit audio goes into, read by the hub
    rig_port: int  # its rigctld, where its PTT is keyed

    def log(self) -> str:
        return (self.directory / "direwolf.log").read_text(errors="replace")


@dataclasses.dataclass
class DirewolfLink:
    modem: Modem
    stations: list[Station]
    hub: subprocess.Popen[bytes]
    started_seconds: float  # from the first process started to both KISS ports accepting

    def hub_log(self) -> str:
        """What the hub noted: when each station started and stopped transmitting."""
        return (self.stations[0].directory.parent / "hub.log").read_text(errors="replace")

    def evidence(self, lines: int = 40) -> str:
        """For a failed test's message: the hub's notes and the end of each station's log,
        to tell a collision (both keyed at once) from a frame lost on the air."""
        parts = [f"hub.log:\n{self.hub_log()}"]
        for station in self.stations:
            tail = "\n".join(station.log().splitlines()[-lines:])
            parts.append(f"{station.call} direwolf.log (last {lines} lines):\n{tail}")
        return "\n".join(parts)

    def hub_cpu_seconds(self) -> float:
        """User plus system CPU the hub has used so far (from /proc)."""
        fields = Path(f"/proc/{self.hub.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PACKAGES = ("direwolf", "libhamlib-utils", "socat")  # libhamlib-utils: rigctld
COMMANDS = ("direwolf", "rigctld", "socat")


def install() -> None:
    """apt-get install direwolf, rigctld and socat (after apt-get update if the first try fails)."""
    if os.geteuid() != 0:
        raise Unavailable("radio tests skipped: no direwolf and not root to install it")
    if shutil.which("apt-get") is None:
        raise Unavailable("radio tests skipped: no direwolf and no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in ([], ["apt-get", "update", "-qq"]):
        if step:
            subprocess.run(
                step, env=env, capture_output=True, check=False, timeout=INSTALL_TIMEOUT_SECONDS
            )
        result = subprocess.run(
            ["apt-get", "install", "-y", "-qq", *PACKAGES],
            env=env,
            capture_output=True,
            check=False,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )
        if result.returncode == 0 and all(map(shutil.which, COMMANDS)):
            return
    last = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
    raise Unavailable(f"radio tests skipped: apt-get install direwolf failed: {last[-1:]}")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_kiss_port() -> int:
    """A free TCP port Direwolf takes for KISSPORT.

    Direwolf 1.6 refuses KISS ports above 49151 ("Invalid port number",
    then it tries 8001), and the kernel's free ports are mostly above
    32768; so draw from 20000-29999, below the ephemeral range.
    """
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(*KISS_PORT_RANGE)
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))  # Direwolf binds every interface
            except OSError:
                continue
            return port
    raise RuntimeError("no free KISS port in 20000-29999")


def asoundrc(tx_fifo: Path) -> str:
    # A named pipe the hub holds open from before Direwolf starts to after it
    # is gone (Direwolf would die of SIGPIPE if the pipe's reader went away),
    # and no process between them: all of a transmission's audio is in the
    # pipe once Direwolf drops its PTT, which is what the hub relies on.
    return (
        'pcm.dwtx {\n    type file\n    slave.pcm "null"\n'
        f'    file "{tx_fifo}"\n    format "raw"\n}}\n'
    )


def direwolf_conf(
    modem: Modem, *, call: str, rx_port: int, kiss_port: int, rig_port: int, fast: bool
) -> str:
    # PTT RIG 2: Hamlib's "NET rigctl", the station's rigctld.
    return (
        f"ADEVICE udp:{rx_port} dwtx\nARATE {modem.sample_rate}\nACHANNELS 1\n"
        f"CHANNEL 0\nMYCALL {call}\nMODEM {modem.baud}\n"
        f"KISSPORT {kiss_port}\nAGWPORT 0\nPTT RIG 2 127.0.0.1:{rig_port}\n"
        + (FAST_TIMING if fast else "")
    )


# The hub and the TNCs simulate a radio in real time: starved of the CPU by
# the tests beside them on two cores, the hub falls behind and starts afresh
# mid-frame, or a TNC's UDP audio overflows, and a frame is lost where no
# radio would lose it. They run ahead of the test load where the system lets
# us (root, as CI is), as a real station's TNC is given priority; elsewhere at
# the normal priority.
REAL_TIME_NICE = -10


def _ahead_of_the_load() -> None:
    """preexec_fn: raise the child's priority (inherited by what it starts) if allowed."""
    with contextlib.suppress(PermissionError):
        os.nice(REAL_TIME_NICE)


def start_rig(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """A Hamlib rigctld with the dummy rig, keyed over TCP on 127.0.0.1:`port`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            ["rigctld", "--model=1", "--ptt-type=RIG", "--listen-addr=127.0.0.1", f"--port={port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_ahead_of_the_load,  # noqa: PLW1509 - one syscall, no locks taken
        )


def start_hub(
    modem: Modem, channels: list[tuple[int, Path, int]], workdir: Path, *, noise_std: int
) -> subprocess.Popen[bytes]:
    """The hub, for stations given as (UDP receive port, transmit pipe, rigctld port)."""
    with (workdir / "hub.log").open("wb") as log:
        hub = subprocess.Popen(
            [
                sys.executable,
                str(HUB),
                "--rate",
                str(modem.sample_rate),
                "--noise-std",
                str(noise_std),
                *(
                    word
                    for rx_port, tx_fifo, rig_port in channels
                    for word in ("--station", str(rx_port), str(tx_fifo), str(rig_port))
                ),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            preexec_fn=_ahead_of_the_load,  # noqa: PLW1509 - one syscall, no locks taken
        )
    assert hub.stdout is not None
    ready, _, _ = select.select([hub.stdout], [], [], START_DEADLINE_SECONDS)
    line = hub.stdout.readline() if ready else b""
    if not line:
        stop_process(hub)
        raise RuntimeError(f"audio hub did not start: {(workdir / 'hub.log').read_text()}")
    assert json.loads(line)["stations"] == len(channels)
    return hub


def start_station(
    modem: Modem,
    directory: Path,
    *,
    call: str,
    rx_port: int,
    tx_fifo: Path,
    rig_port: int,
    fast: bool,
) -> Station:
    kiss_port = free_kiss_port()
    (directory / ".asoundrc").write_text(asoundrc(tx_fifo))
    (directory / "direwolf.conf").write_text(
        direwolf_conf(
            modem, call=call, rx_port=rx_port, kiss_port=kiss_port, rig_port=rig_port, fast=fast
        )
    )
    with (directory / "direwolf.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REAPER), "direwolf", "-t", "0", "-q", "d", "-c", "direwolf.conf"],
            cwd=directory,
            env={**os.environ, "HOME": str(directory)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown kills the pipe too
            preexec_fn=_ahead_of_the_load,  # noqa: PLW1509 - one syscall, no locks taken
        )
    return Station(call, kiss_port, directory, process, tx_fifo, rig_port)


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_until_ready(stations: list[Station], deadline: float) -> bool:
    """True once every KISS port accepts; False if a Direwolf exited or time ran out."""
    waiting = list(stations)
    while waiting:
        if any(station.process.poll() is not None for station in stations):
            return False
        if time.monotonic() > deadline:
            return False
        waiting = [station for station in waiting if not port_accepts(station.kiss_port)]
        if waiting:
            time.sleep(POLL_SECONDS)  # a poll with a deadline
    return True


def wait_until_rigs_listen(rigs: dict[int, subprocess.Popen[bytes]], deadline: float) -> bool:
    """True once every rigctld (by port) accepts; False if one exited or time ran out."""
    waiting = dict(rigs)
    while waiting:
        if any(rig.poll() is not None for rig in rigs.values()) or time.monotonic() > deadline:
            return False
        waiting = {port: rig for port, rig in waiting.items() if not port_accepts(port)}
        if waiting:
            time.sleep(POLL_SECONDS)  # a poll with a deadline
    return True


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.stdout is not None:
        process.stdout.close()
    process.terminate()
    try:
        process.wait(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Direwolf and everything it started (the pipe's sh and socat), gone for sure.

    `process` is tests/reaper.py, which SIGKILLs its group (a test TNC has
    nothing to save, and Direwolf's SIGTERM handler takes about two seconds)
    and reaps it; if even that hangs, the group is SIGKILLed from here.
    """
    group = process.pid  # start_new_session: the group id is the leader's pid
    process.terminate()
    try:
        process.wait(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + STOP_DEADLINE_SECONDS
    while group_alive(group):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Direwolf's process group {group} survived SIGKILL")
        time.sleep(POLL_SECONDS)  # a poll with a deadline


def group_alive(group: int) -> bool:
    """Whether any process of `group` still runs. Zombies do not count: only
    their parent can reap them, and an orphan's parent may be an init that
    never does (tests/reaper.py is there so that none is orphaned)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


@contextlib.contextmanager
def running_link(
    modem: Modem = AFSK_1200, *, fast: bool = True, noise_std: int = 0
) -> Iterator[DirewolfLink]:
    """Two Direwolf stations, N0CALL-1 and N0CALL-2, on one channel, for the block.

    `noise_std` adds Gaussian noise to what each station hears (int16 units,
    after the quarter-scale gain): 7000 loses about 40% of 200-byte frames
    at 1200 baud, 8000 all of them.
    """
    if not all(map(shutil.which, COMMANDS)):
        install()
    for attempt in range(1, START_ATTEMPTS + 1):
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rise-dw-")))
            started = start_link(stack, workdir, modem, fast=fast, noise_std=noise_std)
            if isinstance(started, DirewolfLink):
                yield started
                return
        if attempt == START_ATTEMPTS:
            raise RuntimeError(f"the radio did not start in {START_ATTEMPTS} attempts:\n{started}")


def start_link(
    stack: contextlib.ExitStack, workdir: Path, modem: Modem, *, fast: bool, noise_std: int
) -> DirewolfLink | str:
    """One attempt: the link, its teardown on `stack`; or the logs of why it did not start."""
    started = time.monotonic()
    directories = [workdir / f"station{number}" for number in (1, 2)]
    rigs = {}
    for directory in directories:
        directory.mkdir()
        os.mkfifo(directory / "tx.fifo")
        rig_port = free_port()
        rigs[rig_port] = start_rig(rig_port, directory / "rigctld.log")
        stack.callback(stop_process, rigs[rig_port])
    if not wait_until_rigs_listen(rigs, time.monotonic() + START_DEADLINE_SECONDS):
        return "\n".join((directory / "rigctld.log").read_text() for directory in directories)
    channels = [
        (free_port(socket.SOCK_DGRAM), directory / "tx.fifo", rig_port)
        for directory, rig_port in zip(directories, rigs, strict=True)
    ]
    hub = start_hub(modem, channels, workdir, noise_std=noise_std)
    stack.callback(stop_process, hub)
    stations = []
    for number, (directory, (rx_port, tx_fifo, rig_port)) in enumerate(
        zip(directories, channels, strict=True), start=1
    ):
        station = start_station(
            modem,
            directory,
            call=f"N0CALL-{number}",
            rx_port=rx_port,
            tx_fifo=tx_fifo,
            rig_port=rig_port,
            fast=fast,
        )
        stack.callback(stop_group, station.process)
        stations.append(station)
    if not wait_until_ready(stations, time.monotonic() + START_DEADLINE_SECONDS):
        return "\n".join(station.log()[-2000:] for station in stations)
    return DirewolfLink(modem, stations, hub, time.monotonic() - started)


def frame_audio(modem: Modem, monitor_line: str, workdir: Path) -> bytes:
    """The transmit audio of one frame, made by Direwolf's gen_packets: S16_LE mono
    at the modem's rate, full scale as Direwolf transmits. `monitor_line` is in
    the packet monitor's form, "N0CALL-1>N0CALL-2:text"."""
    (workdir / "frame.txt").write_text(monitor_line)  # a newline would go into the frame
    rate = ["-B", str(modem.baud), "-r", str(modem.sample_rate)]
    subprocess.run(
        [
            "gen_packets",
            *rate,
            "-a",
            "100",
            "-o",
            str(workdir / "frame.wav"),
            str(workdir / "frame.txt"),
        ],
        check=True,
        capture_output=True,
        timeout=START_DEADLINE_SECONDS,
    )
    with wave.open(str(workdir / "frame.wav"), "rb") as recording:
        return recording.readframes(recording.getnframes())


@contextlib.contextmanager
def keyed_by_hand(station: Station) -> Iterator[Callable[[bytes], None]]:
    """Transmit in an idle `station`'s place: its PTT keyed through its rigctld
    for the block, which writes audio with the function it is given into the
    station's transmit pipe, as Direwolf would."""

    def rig(command: bytes) -> None:
        rigctl.sendall(command + b"\n")
        reply = replies.readline().strip()
        assert reply == b"RPRT 0", f"rigctld answered {reply!r} to {command!r}"

    with (
        socket.create_connection(("127.0.0.1", station.rig_port), timeout=5) as rigctl,
        rigctl.makefile("rb") as replies,
        station.tx_fifo.open("wb", buffering=0) as pipe,
    ):
        rig(b"T 1")
        try:
            yield pipe.write
        finally:
            rig(b"T 0")


class KissClient:
    """A KISS TCP client of one station, speaking through rise_dtn.core.kiss."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.decoder = KissDecoder()
        self.frames: list[KissFrame] = []

    def send(self, payload: bytes) -> None:
        self.socket.sendall(kiss.encode(payload))

    def receive(self, count: int, *, deadline_seconds: float) -> list[KissFrame]:
        """`count` frames (fewer if the deadline passes first), kept in order."""
        deadline = time.monotonic() + deadline_seconds
        while len(self.frames) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([self.socket], [], [], remaining)
            if ready:
                data = self.socket.recv(65536)
                if not data:
                    break
                self.frames += self.decoder.feed(data)
        taken, self.frames = self.frames[:count], self.frames[count:]
        return taken

    def close(self) -> None:
        self.socket.close()


@contextlib.contextmanager
def link_or_skip(modem: Modem, *, fast: bool = True, noise_std: int = 0) -> Iterator[DirewolfLink]:
    """`running_link` for a fixture: a test skip, with the reason, if Direwolf cannot be had."""
    with contextlib.ExitStack() as stack:
        try:
            link = stack.enter_context(running_link(modem, fast=fast, noise_std=noise_std))
        except Unavailable as exc:
            pytest.skip(str(exc))
        yield link
