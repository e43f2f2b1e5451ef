"""Serial and KISS addresses, and the link profile each one carries (rate, frame size, duplex).

    serial:/dev/ttyUSB0?baud=9600              our byte-stuffed frames on a plain cable
    serial:socket://HOST:PORT / serial:rfc2217://HOST:PORT   the same through pyserial URLs
    kiss:/dev/ttyUSB0?baud=9600&profile=tnc1200  a KISS TNC on a serial port
    kiss+tcp://HOST:8001?profile=tnc9600       a KISS TNC on TCP (Direwolf's KISSPORT)

Options after `?` (all optional): `profile` (cable, tnc1200, tnc9600, lora:
the defaults below), `baud` (the serial port's speed), `rate` (the line's
bit/s if it differs from `baud`, e.g. a TNC's modem), `frame` (bytes of
payload per frame), `window` (frames in flight), `duplex` (full or half),
`turnaround` (seconds), `giveup` (seconds of silence from the peer, while
it owes us an acknowledgement, before the call is given up), `mycall` and
`dest` (an AX.25 UI header with these callsigns, where a licence needs
one), `kissport` (0-15). Only text here: nothing is opened.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from rise_dtn.carriers.address import Address
from rise_dtn.core.errors import UsageError

SCHEMES = ("serial", "kiss", "kiss+tcp")


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """What the ARQ needs of the line; `rate` in bit/s on the line (10 bits a byte on an
    async serial line, about 8 on a synchronous modem, but TNC framing adds its own)."""

    rate: int
    frame: int
    window: int
    half_duplex: bool
    turnaround: float


PROFILES = {
    # A cable or transparent modem at 9600 8N1: large frames, full duplex.
    "cable": Profile(rate=9600, frame=480, window=32, half_duplex=False, turnaround=0.0),
    # AFSK 1200 through a TNC: Direwolf's TXDELAY/TXTAIL and the audio path
    # cost about 0.3 s per turn; 200-byte frames so that a loss costs ~1.5 s.
    "tnc1200": Profile(rate=1200, frame=200, window=16, half_duplex=True, turnaround=0.4),
    "tnc9600": Profile(rate=9600, frame=480, window=32, half_duplex=True, turnaround=0.2),
    # LoRa SF9 at 125 kHz: ~1758 bit/s, modems take about 255-byte frames.
    "lora": Profile(rate=1758, frame=240, window=16, half_duplex=True, turnaround=0.1),
}
KEYS = {"profile", "baud", "rate", "frame", "window", "duplex", "turnaround", "mycall", "dest"}
KEYS |= {"kissport", "giveup"}
# Two minutes of silence: a radio's peer may wait out a busy channel or a
# neighbour's long transmission; a cable's could be shortened with giveup=.
DEFAULT_GIVE_UP_SECONDS = 120.0
# Session DATA frames on a serial line (SerialSpec.data_bytes): each costs
# about 31 bytes of session framing and 18 of Noise; 4 KiB keeps that near
# 1% (2 KiB cost Direwolf at 1200 baud over 1% of its goodput), while a cut
# at 1200 bit/s still costs under half a minute; 64 KiB is one Noise message
# at most.
MIN_DATA_BYTES = 4096
MAX_DATA_BYTES = 65_000


@dataclasses.dataclass(frozen=True, slots=True)
class SerialSpec:
    scheme: str  # serial | kiss | kiss+tcp
    where: str  # a device path, a pyserial URL, or HOST:PORT for kiss+tcp
    baud: int
    profile: Profile
    mycall: str | None = None
    dest: str | None = None
    kissport: int = 0
    give_up_seconds: float = DEFAULT_GIVE_UP_SECONDS

    @property
    def kiss(self) -> bool:
        return self.scheme != "serial"

    @property
    def bytes_per_second(self) -> float:
        return self.profile.rate / 10

    @property
    def data_bytes(self) -> int:
        """Bundle bytes per session DATA frame: about four seconds of line time, so that
        a cut costs seconds, not the minutes a 256 KiB frame takes at 9600 bit/s."""
        return max(MIN_DATA_BYTES, min(MAX_DATA_BYTES, int(self.bytes_per_second * 4)))


def spec_of(address: Address) -> SerialSpec:
    """The address's spec; UsageError with one line if anything in it is wrong."""
    if address.scheme not in SCHEMES:
        raise UsageError(f"not a serial or KISS address: {address}")
    target = address.target
    if address.scheme == "kiss+tcp":
        if not target.startswith("//"):
            raise UsageError(f"not an address: {address} (use kiss+tcp://HOST:PORT)")
        target = target[2:]
    where, _mark, query = target.partition("?")
    where = where.rstrip("/") if address.scheme == "kiss+tcp" else where
    if not where:
        raise UsageError(f"not an address: {address} (no port or device)")
    try:
        options = dict(
            urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        )
    except ValueError:
        raise UsageError(f"not an address: {address} (options are KEY=VALUE&...)") from None
    unknown = sorted(set(options) - KEYS)
    if unknown:
        raise UsageError(
            f"unknown option {unknown[0]!r} in {address} (known: {', '.join(sorted(KEYS))})"
        )
    default = "cable" if address.scheme == "serial" else "tnc1200"
    name = options.get("profile", default)
    if name not in PROFILES:
        raise UsageError(f"unknown link profile {name!r} (known: {', '.join(sorted(PROFILES))})")
    base = PROFILES[name]
    try:
        baud = int(options.get("baud", 9600))
        # A cable's line rate is its baud rate; a TNC's is its modem's.
        serial_rate = options.get("baud", base.rate) if address.scheme == "serial" else base.rate
        profile = Profile(
            rate=int(options.get("rate", serial_rate)),
            frame=int(options.get("frame", base.frame)),
            window=int(options.get("window", base.window)),
            half_duplex=options.get("duplex", "half" if base.half_duplex else "full") == "half",
            turnaround=float(options.get("turnaround", base.turnaround)),
        )
        kissport = int(options.get("kissport", 0))
        give_up = float(options.get("giveup", DEFAULT_GIVE_UP_SECONDS))
    except ValueError:
        raise UsageError(f"not an address: {address} (a number is malformed)") from None
    if options.get("duplex", "full") not in ("full", "half"):
        raise UsageError(f"duplex is full or half, not {options['duplex']!r}")
    if not 50 <= baud <= 4_000_000 or not 50 <= profile.rate <= 100_000_000:
        raise UsageError(f"baud and rate must be 50 to 4000000 bit/s in {address}")
    if not 1 <= profile.frame <= 2000 or not 1 <= profile.window <= 256:
        raise UsageError(f"frame must be 1-2000 bytes and window 1-256 frames in {address}")
    if not 0 <= profile.turnaround <= 30 or not 0 <= kissport <= 15:
        raise UsageError(f"turnaround must be 0-30 s and kissport 0-15 in {address}")
    if not 0.1 <= give_up <= 86400:
        raise UsageError(f"giveup must be 0.1-86400 s in {address}")
    mycall, dest = _callsigns(address, options)
    if address.scheme == "kiss+tcp":
        from rise_dtn.carriers.address import host_port

        host_port(Address("tcp", where), default_port=8001)
    return SerialSpec(address.scheme, where, baud, profile, mycall, dest, kissport, give_up)


def _callsigns(address: Address, options: dict[str, str]) -> tuple[str | None, str | None]:
    mycall, dest = options.get("mycall"), options.get("dest")
    if (mycall is None) != (dest is None):
        raise UsageError(f"an AX.25 header needs both mycall and dest in {address}")
    if mycall is not None and address.scheme == "serial":
        raise UsageError("mycall/dest (AX.25) go with kiss: and kiss+tcp: addresses")
    if mycall is not None and dest is not None:
        from rise_dtn.core.ax25 import Callsign

        Callsign.parse(mycall)  # UsageError with the reason
        Callsign.parse(dest)
    return mycall, dest
