"""Opt-in LAN discovery: announce this daemon, or find a known peer's daemon.

Beacons go by UDP to a multicast group on the local network by default
(TTL 1: they never leave it), or to any address given (a test uses
127.0.0.1). Listening answers only for peers in the book; strangers'
beacons are dropped without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

from rise_dtn.core import beacon
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import NodeId, PublicIdentity
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer

GROUP = "239.255.54.54"  # organisation-local scope (RFC 2365): stays on site
BEACON_PORT = 5455
DEFAULT_TARGET = f"{GROUP}:{BEACON_PORT}"
INTERVAL_SECONDS = 5.0


def _split(address: str) -> tuple[str, int]:
    host, _colon, port = address.rpartition(":")
    return host, int(port)


def _multicast(host: str) -> bool:
    try:
        return 224 <= int(host.split(".", maxsplit=1)[0]) <= 239
    except ValueError:
        return False


async def announce(home: Home, *, port: int, target: str, stop: asyncio.Event) -> None:
    """Send a signed beacon every few seconds until `stop`."""
    host, target_port = _split(target)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if _multicast(host):
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    sock.setblocking(False)
    try:
        while not stop.is_set():
            data = beacon.encode(home.identity, port=port, now=int(time.time()))
            with contextlib.suppress(OSError):  # no network yet: try again next time
                sock.sendto(data, (host, target_port))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL_SECONDS)
    finally:
        sock.close()


def _listener(address: str) -> socket.socket:
    host, port = _split(address)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if _multicast(host):
        sock.bind(("", port))
        membership = struct.pack("4s4s", socket.inet_aton(host), socket.inet_aton("0.0.0.0"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    else:
        sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def find(home: Home, peer: Peer, *, listen: str, timeout: float) -> tuple[str, int] | None:
    """Wait up to `timeout` seconds for `peer`'s beacon; its (host, port), or None."""
    peers = {known.node_id: known.card.public for known in home.peers.all()}

    def known(node_id: NodeId) -> PublicIdentity | None:
        return peers.get(node_id)

    loop = asyncio.get_running_loop()
    sock = _listener(listen)
    deadline = loop.time() + timeout
    try:
        while (left := deadline - loop.time()) > 0:
            try:
                data, (host, _port) = await asyncio.wait_for(
                    loop.sock_recvfrom(sock, beacon.MAX_BEACON_BYTES + 1), left
                )
            except TimeoutError:
                return None
            try:
                presence = beacon.decode(data, known=known, now=int(time.time()))
            except BundleError:
                continue  # forged, stale or garbage: keep listening
            if presence is not None and presence.node_id == peer.node_id:
                return host, presence.port
        return None
    finally:
        sock.close()
