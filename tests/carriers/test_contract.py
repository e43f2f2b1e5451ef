"""Every installed carrier against the one contract (contract.py), each over its real medium.

A rig per carrier: the directory carrier on a real folder (in /dev/shm when
there is one, so the medium is another file system than the spool, as a
stick is), TCP over 127.0.0.1 sockets to a daemon's server running in a
thread, the stream carrier over the pipes of the installed `rise-daemon
--stdio`, the serial carrier between two real socat pseudo-terminals
joined by the paced link of tests/radiolink.py, the mailbox carrier on a
folder of the real Dovecot of tests/mailserver.py. A carrier's rig is its
adapter: about forty lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shlex
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from rise_dtn.carriers import registry
from rise_dtn.carriers.address import Address
from rise_dtn.carriers.base import Carrier, Exchanged
from rise_dtn.carriers.mailbox.exchange import pair_key
from rise_dtn.core.errors import RiseError
from rise_dtn.core.mailpart import MailKeys, message_id_for
from rise_dtn.node.home import Home
from rise_dtn.store.atomic import TMP_PREFIX
from tests.carriers.contract import CASES, MISSING, Rig, Session, network, peer_of, run_case
from tests.conftest import BIN
from tests.cutproxy import cut_proxy
from tests.mailserver import Dovecot, dovecot  # noqa: F401 - the mailbox rig's server
from tests.radiolink import LinkProfile, paced_link

WAIT_SECONDS = 60  # the bound on any wait for a server thread or a proxy


def _exchange(
    carrier: Carrier, caller: Home, answerer: Home, address: Address, now: int | None
) -> tuple[Exchanged | None, str | None]:
    peer = peer_of(caller, answerer)
    assert peer is not None
    try:
        report = carrier.exchange(
            caller, peer, address, now=now if now is not None else int(time.time())
        )
    except RiseError as exc:
        return None, exc.message
    return report, None


# The directory carrier: a folder standing in for a stick.


class DirectoryRig:
    def __init__(self, carrier: Carrier, base: Path) -> None:
        self.carrier = carrier
        shm = Path("/dev/shm")
        parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else base
        self._dir = tempfile.TemporaryDirectory(prefix="rise-contract-", dir=parent)
        self.root = Path(self._dir.name)
        self.address = Address("dir", str(self.root))

    def session(
        self,
        caller: Home,
        answerer: Home,
        *,
        now: int | None = None,
        cut_at: int | None = None,
        garbage: bytes | None = None,
    ) -> Session:
        folder = self.root / "rise-dtn" / str(answerer.identity.node_id)
        folder /= str(caller.identity.node_id)
        if garbage is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "aaaaaaaaaaaaaaaaaaaaaaaaaa.rsb").write_bytes(garbage)
        report, error = _exchange(self.carrier, caller, answerer, self.address, now)
        if cut_at is not None:
            for path in folder.glob("*.rsb"):  # the stick was pulled while this was written
                data = path.read_bytes()
                (folder / f"{TMP_PREFIX}cut-{path.name}").write_bytes(data[:cut_at])
                path.unlink()
        # The answerer takes part as a place does: its own pass, for the caller
        # if it knows it, else for whom it knows (taking in is never restricted).
        serving = peer_of(answerer, caller) or answerer.peers.all()[0]
        back = self.carrier.exchange(answerer, serving, self.address, now=int(time.time()))
        return Session(report, error, [*back.rejected, *back.notes])

    def close(self) -> None:
        self._dir.cleanup()


# The TCP carrier: the daemon's server in a thread, real sockets, a proxy that cuts.


class _Server:
    """online.serve for one home on 127.0.0.1, in its own thread and event loop."""

    def __init__(self, home_path: Path) -> None:
        self.lines: list[str] = []
        self.port = 0
        self._home_path = home_path
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT_SECONDS) and self.port, "the server did not start"

    async def _main(self) -> None:
        from rise_dtn.carriers.tcp import online

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        hub = online.Hub(Home.open(self._home_path), toss=None, log=self.lines.append)

        def ready(port: int) -> None:
            self.port = port
            self._ready.set()

        try:
            await online.serve(hub, ("127.0.0.1", 0), stop=self._stop, ready=ready)
        finally:
            self._ready.set()

    def close(self) -> None:
        """Stop; returns once every session has wound down (its files are written)."""
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), "the server did not stop"


class _CuttingProxy:
    """Forwards one connection to `port`, cutting it after `budget` bytes from the caller."""

    def __init__(self, port: int, budget: int) -> None:
        self._target = port
        self._budget = budget
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._listener.settimeout(WAIT_SECONDS)
        with contextlib.suppress(OSError):
            client, _where = self._listener.accept()
            server = socket.create_connection(("127.0.0.1", self._target))
            try:
                self._pipe(client, server)
            finally:
                client.close()
                server.close()

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        moved = 0
        while moved < self._budget:
            ready, _w, _x = select.select([client, server], [], [], WAIT_SECONDS)
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is client:
                    data = data[: self._budget - moved]
                    moved += len(data)
                    server.sendall(data)
                else:
                    client.sendall(data)

    def close(self) -> None:
        self._thread.join(WAIT_SECONDS)
        self._listener.close()


class TcpRig:
    def __init__(self, carrier: Carrier, base: Path) -> None:
        self.carrier = carrier

    def session(
        self,
        caller: Home,
        answerer: Home,
        *,
        now: int | None = None,
        cut_at: int | None = None,
        garbage: bytes | None = None,
    ) -> Session:
        server = _Server(answerer.path)
        try:
            if garbage is not None:
                with socket.create_connection(("127.0.0.1", server.port), WAIT_SECONDS) as raw:
                    raw.sendall(garbage)
                    raw.shutdown(socket.SHUT_WR)
                    while raw.recv(65536):  # until the daemon hangs up on it
                        pass
            proxy = _CuttingProxy(server.port, cut_at) if cut_at is not None else None
            port = proxy.port if proxy is not None else server.port
            try:
                address = Address("tcp", f"127.0.0.1:{port}")
                report, error = _exchange(self.carrier, caller, answerer, address, now)
            finally:
                if proxy is not None:
                    proxy.close()
        finally:
            server.close()
        return Session(report, error, server.lines)

    def close(self) -> None:
        pass


# The stream carrier: the installed rise-daemon --stdio at the end of a real pipe.


class PipeRig:
    def __init__(self, carrier: Carrier, base: Path) -> None:
        self.carrier = carrier
        self._log = base / "stdio-daemon.log"

    def _daemon(self, answerer: Home) -> str:
        words = [str(BIN / "rise-daemon"), "--stdio", "--no-toss", "--no-send-worker"]
        words += ["--home", str(answerer.path)]
        return f"{shlex.join(words)} 2>{shlex.quote(str(self._log))}"

    def session(
        self,
        caller: Home,
        answerer: Home,
        *,
        now: int | None = None,
        cut_at: int | None = None,
        garbage: bytes | None = None,
    ) -> Session:
        lines: list[str] = []
        daemon = self._daemon(answerer)
        if garbage is not None:
            subprocess.run(daemon, shell=True, input=garbage, timeout=WAIT_SECONDS, check=False)
            lines += self._log.read_text().splitlines()
        # dd passes each read on at once (head -c would hold it in its stdio buffer).
        cutter = f"dd status=none bs=65536 iflag=count_bytes count={cut_at}"
        command = daemon if cut_at is None else f"{cutter} | {daemon}"
        report, error = _exchange(self.carrier, caller, answerer, Address("exec", command), now)
        lines += self._log.read_text().splitlines() if self._log.exists() else []
        return Session(report, error, lines)

    def close(self) -> None:
        pass


# The serial carrier: rise-serial's answering loop in a thread, real ptys, a paced relay.

# Fast, so that the suite's megabytes take seconds; the 1200 baud and lossy
# links are tests/carriers/serial's. A silent peer is given up after three
# seconds instead of two minutes, so that a cut session ends soon (not less:
# a busy machine may stall a side for a second, which must not end a session).
SERIAL_OPTIONS = "baud=2000000&giveup=3"


class _SerialAnswerer:
    """carriers/serial/session.answer for one home on one pty, in its own thread and loop."""

    def __init__(self, home_path: Path, device: str) -> None:
        self.lines: list[str] = []
        self.failure: BaseException | None = None
        self._home_path = home_path
        self._device = device
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT_SECONDS), "the answerer did not start"
        assert self.failure is None, self.failure

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the rig, never lost in the thread
            self.failure = exc
            self._ready.set()

    async def _main(self) -> None:
        from rise_dtn.carriers.serial import session
        from rise_dtn.carriers.serial.profile import spec_of
        from rise_dtn.carriers.tcp import online

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        hub = online.Hub(Home.open(self._home_path), toss=None, log=self.lines.append)
        spec = spec_of(Address("serial", f"{self._device}?{SERIAL_OPTIONS}"))
        await session.answer(hub, spec, stop=self._stop, ready=self._ready.set)

    def close(self) -> None:
        """Stop; returns once the session has wound down (its partial copy is written)."""
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), "the answerer did not stop"
        assert self.failure is None, self.failure


class SerialRig:
    def __init__(self, carrier: Carrier, base: Path) -> None:
        self.carrier = carrier

    def session(
        self,
        caller: Home,
        answerer: Home,
        *,
        now: int | None = None,
        cut_at: int | None = None,
        garbage: bytes | None = None,
    ) -> Session:
        # A new cable each session: cut_at counts the caller's line bytes, framing and all.
        profile = LinkProfile(bits_per_second=2_000_000, cut_after_bytes=cut_at)
        with paced_link(profile) as link:
            server = _SerialAnswerer(answerer.path, link.b_path)
            try:
                if garbage is not None:
                    link.inject_toward_b(garbage)
                address = Address("serial", f"{link.a_path}?{SERIAL_OPTIONS}")
                report, error = _exchange(self.carrier, caller, answerer, address, now)
            finally:
                server.close()
        return Session(report, error, server.lines)

    def close(self) -> None:
        pass


# The mailbox carrier: a fresh folder in the real Dovecot of tests/mailserver.py,
# shared by both nodes; a cut is tests/cutproxy.py between the caller and Dovecot.


class MailboxRig:
    def __init__(self, carrier: Carrier, base: Path, *, server: Dovecot) -> None:
        self.carrier = carrier
        self.dovecot = server
        self.user = server.users["alice"]
        self.folder = f"contract-{uuid.uuid4().hex[:12]}"
        self.password_file = base / "mail-password"
        self.password_file.write_text(self.user.password + "\n")
        self.password_file.chmod(0o600)

    def address(self, port: int) -> Address:
        user = self.user.address.replace("@", "%40")
        return Address("imaps", f"{user}@127.0.0.1:{port}/{self.folder}")

    def _configure(self, home: Home) -> None:
        path = home.path / "config.toml"
        text = path.read_text(encoding="utf-8")
        if "[mailbox]" not in text:
            text += (
                f"\n[mailbox]\npassword_file = {json.dumps(str(self.password_file))}\n"
                f"ca_file = {json.dumps(str(self.dovecot.ca_file))}\n"
            )
            path.write_text(text, encoding="utf-8")
            home.__dict__.pop("config", None)  # Home caches its config; read it again

    def _client(self) -> IMAPClient:
        client = IMAPClient(
            "127.0.0.1", port=self.dovecot.imaps_port, ssl=True,
            ssl_context=self.dovecot.ssl_context(), timeout=WAIT_SECONDS,
        )  # fmt: skip
        client.login(self.user.address, self.user.password)
        if not client.folder_exists(self.folder):
            client.create_folder(self.folder)
        return client

    def _put_garbage(self, caller: Home, answerer: Home, garbage: bytes) -> None:
        """Raw garbage as a mail, and garbage under a Message-ID the answerer takes for ours."""
        peer = peer_of(caller, answerer)
        assert peer is not None
        keys = MailKeys.derive(
            pair_key(caller.identity, peer, sender=caller.identity.node_id, recipient=peer.node_id)
        )
        tagged = message_id_for(os.urandom(12), keys, "example.test")
        client = self._client()
        try:
            client.append(self.folder, garbage)
            client.append(self.folder, f"Message-ID: {tagged}\r\n\r\n".encode() + garbage)
        finally:
            client.logout()

    def session(
        self,
        caller: Home,
        answerer: Home,
        *,
        now: int | None = None,
        cut_at: int | None = None,
        garbage: bytes | None = None,
    ) -> Session:
        for home in (caller, answerer):
            self._configure(home)
        if garbage is not None:
            self._put_garbage(caller, answerer, garbage)
        with cut_proxy(self.dovecot.imaps_port) as proxy:
            proxy.cut.upstream_bytes = cut_at
            report, error = _exchange(self.carrier, caller, answerer, self.address(proxy.port), now)
        serving = peer_of(answerer, caller) or answerer.peers.all()[0]
        direct = self.address(self.dovecot.imaps_port)
        back = self.carrier.exchange(answerer, serving, direct, now=int(time.time()))
        return Session(report, error, [*back.rejected, *back.notes])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            client = self._client()
            client.delete_folder(self.folder)
            client.logout()


RIGS: dict[str, Callable[..., Rig]] = {
    "directory": DirectoryRig,
    "tcp": TcpRig,
    "stream": PipeRig,
    "serial": SerialRig,
    "mailbox": MailboxRig,
}
INSTALLED = registry.load()


def test_every_installed_carrier_has_a_rig() -> None:
    """A carrier without a rig would be a carrier nobody checked."""
    assert not INSTALLED.problems, INSTALLED.problems
    names = {item.carrier.name for item in INSTALLED.carriers}
    assert {"directory", "tcp", "stream", "mailbox"} <= names
    assert not names - set(RIGS), f"no contract rig for {sorted(names - set(RIGS))}"


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    name = request.param
    servers = {"server": request.getfixturevalue("dovecot")} if name == "mailbox" else {}
    made = RIGS[name](INSTALLED.named(name), tmp_path, **servers)
    yield made
    made.close()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("rig", [item.carrier.name for item in INSTALLED.carriers], indirect=True)
def test_contract(rig: Rig, case: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    name = request.node.callspec.params["rig"]
    if (name, case) in MISSING:
        pytest.skip(f"{name} {case}: {MISSING[name, case]}")
    run_case(case, rig, network(tmp_path / "nodes"))
