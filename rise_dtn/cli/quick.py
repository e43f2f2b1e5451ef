"""rise-send's entry point: hand the work to a running daemon's warm worker, else do it here.

The hand-off path imports nothing beyond what the interpreter has loaded
already and the `_socket` extension: its whole point is to skip the imports
(see rise_dtn/node/warm.py). Even `socket` and `json` are left out: with
`re`, `enum` and `selectors` under them they took as long again as the
interpreter's own start (8 ms -> 16 ms in a plain venv). RISE_NO_DAEMON=1
turns the hand-off off.
"""

from __future__ import annotations

import os
import sys

SOCKET_NAME = "send.sock"  # as rise_dtn.node.warm.SOCKET_NAME


def rise_send() -> None:
    code = _hand_off(sys.argv[1:])
    if code is None:
        from rise_dtn.cli.main import rise_send as run_here

        run_here()
        return
    os._exit(code)


def run_in_worker(argv: list[str]) -> int:
    """One rise-send with these arguments, in a warm worker's child (node/warm.py)."""
    from rise_dtn.cli.common import talk_plainly
    from rise_dtn.cli.main import _dispatch, load_command

    talk_plainly()
    sys.argv = ["rise-send", *argv]
    return _dispatch(load_command("send"), "rise-send")


def preload_worker(home: os.PathLike[str] | None = None) -> None:
    """Import what a send uses, once in the worker, so that each child starts with it done.

    With `home`, also parse its config and check its peers' cards and its
    map's: each child then finds them done too, as long as the files have not
    changed since (node/config.py's and node/peers.py's caches compare their
    stamps; core/card.py's remembers a card by its bytes).
    """
    import contextlib

    from rise_dtn.cli.main import load_command
    from rise_dtn.node.send import onion_send, routed, routes, send  # noqa: F401
    from rise_dtn.store import index, transaction  # noqa: F401

    load_command("send")
    # click's parser tries `-q` as a long option first and builds a NoSuchOption
    # on the way, which imports difflib (3 ms in each child otherwise).
    import difflib  # noqa: F401

    from rise_dtn.cli import bars  # noqa: F401 - progress_bars imports it on entry

    with contextlib.suppress(ImportError):
        import sqlalchemy.dialects.sqlite.pysqlite  # noqa: F401 - loaded on first connect
    from rise_dtn.store.warmup import warm_up

    warm_up()
    _warm_ciphers()
    if home is not None:
        from pathlib import Path

        from rise_dtn.core.errors import RiseError
        from rise_dtn.node.home import Home

        with contextlib.suppress(RiseError, OSError):  # a send reports what is wrong
            opened = Home(Path(home))
            opened.peers.all()
            if opened.config.index_url is None:
                _check_map_cards(opened.spool.index_path)


def start_worker(home: os.PathLike[str]) -> int | None:
    """The warm worker a long-running command (rise-daemon, rise-serial) keeps for
    rise-send to `home`: forked before the event loop starts any thread (node/warm.py)."""
    from pathlib import Path

    from rise_dtn.node import warm

    return warm.start(
        Path(home),
        command=run_in_worker,
        preload=lambda: preload_worker(home),
        ready=lambda: ready_worker(home),
    )


def ready_worker(home: os.PathLike[str]) -> None:
    """In each child the worker forks ahead, once it has waited a moment for a caller
    (node/warm.py): a send rehearsed in memory, then the index connections a send
    opens (the map, then the write), set up already. A caller who comes meanwhile
    waits for it, but would have paid for most of it in its own send."""
    from pathlib import Path

    from rise_dtn.node.home import Home
    from rise_dtn.store import plain_index

    _rehearse(Path(home))
    opened = Home(Path(home))
    if opened.config.index_url is None:
        plain_index.preopen(opened.spool.index_path, 2)


# What a rehearsal parses: a message over relays, as a chat client or a mail gateway
# sends one (the peer's name is put last).
REHEARSED_ARGV = ("-q", "--hops", "2", "-")


def _rehearse(path: os.PathLike[str]) -> bool:
    """Parse a rise-send command line and queue a message over relays in memory only
    (routed.rehearse), for the first peer that is not a relay: the worker's pages a
    send writes to become this child's own now, not on the caller's way. True if it
    went the whole way (False: no such peer, no relay, no route, or a failure)."""
    import contextlib
    import random
    import time
    from pathlib import Path

    from rise_dtn.cli.main import load_command
    from rise_dtn.node.home import Home
    from rise_dtn.node.send import routed

    # A rehearsal that fails costs the send nothing: the send says what is wrong.
    with contextlib.suppress(Exception), contextlib.closing(Home.open(Path(path))) as home:
        peers = home.peers.all()
        peer = next((peer for peer in peers if not peer.relay), None)
        if peer is None:
            return False
        with load_command("send").make_context("rise-send", [*REHEARSED_ARGV, peer.name]):
            pass
        if not any(other.relay for other in peers):
            return False
        hops, _copies = routed.RouteOptions().resolve(home)  # as a send with no options
        routed.rehearse(home, peer, hops=hops, now=int(time.time()), rng=random.SystemRandom())
        return True
    return False


def _check_map_cards(index_path: os.PathLike[str]) -> None:
    """The relays' cards a route is drawn from, checked once in the worker (Card.from_bytes
    remembers them by their bytes, for every child), on a connection closed again before
    any fork. A card that arrives later with a map is checked by the send that reads it."""
    import contextlib
    import time
    from pathlib import Path

    from rise_dtn.core.card import Card
    from rise_dtn.core.errors import PeerError
    from rise_dtn.store import plain_index

    plain_map = plain_index.PlainMap.open(Path(index_path))
    if plain_map is None:
        return
    try:
        for data in plain_map.cards(int(time.time())).values():
            with contextlib.suppress(PeerError):
                Card.from_bytes(data)
    finally:
        plain_map.close()


def _warm_ciphers() -> None:
    """Create each cipher a send uses once: OpenSSL looks an algorithm up on its first use in
    a process (0.5-0.8 ms each), and every forked child would otherwise pay that again."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    key = bytes(32)
    Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(b"warm")
    ChaCha20Poly1305(key).encrypt(bytes(12), b"warm", None)
    Poly1305(key).update(b"warm")


def _home(argv: list[str]) -> str | None:
    """The node directory, as rise-send would find it (None: ask the slow path)."""
    for number, item in enumerate(argv):
        if item == "--":
            break
        if item == "--home":
            return argv[number + 1] if number + 1 < len(argv) else None
        if item.startswith("--home="):
            return item.removeprefix("--home=")
    if os.environ.get("RISE_HOME"):
        return os.environ["RISE_HOME"]
    # The platform default, as Home.default_home finds it (platformdirs is small).
    import platformdirs

    return platformdirs.user_data_dir("rise-dtn", appauthor=False)


def _hand_off(argv: list[str]) -> int | None:
    """The exit status of the worker's run, or None if no worker took the job."""
    home = _home(argv)
    if os.environ.get("RISE_NO_DAEMON") or not home:
        return None
    import _socket

    path = os.path.join(os.path.abspath(os.path.expanduser(home)), SOCKET_NAME)
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.connect(path)
        env = {key: value for key, value in os.environ.items() if key.startswith("RISE_")}
        body = request_json(argv, os.getcwd(), env)
        # As socket.send_fds does it: our stdin, stdout and stderr ride along.
        fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (0, 1, 2))
        connection.sendmsg(
            [len(body).to_bytes(4, "big") + body],
            [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)],
        )
    except OSError:
        connection.close()
        return None  # nobody listening (no daemon, or one killed): nothing was done
    reply = b""
    try:
        while not reply.endswith(b"\n"):
            more = connection.recv(16)
            if not more:
                break
            reply += more
    except KeyboardInterrupt:
        return 130
    finally:
        connection.close()
    try:
        return int(reply)
    except ValueError:
        # The worker took the job and vanished: the send may or may not have
        # happened, so doing it again here could send it twice.
        print(
            "rise-send: the daemon's worker stopped before answering; "
            "check `rise status`, then send again (RISE_NO_DAEMON=1 skips the daemon)",
            file=sys.stderr,
        )
        return 1


def request_json(argv: list[str], cwd: str, env: dict[str, str]) -> bytes:
    """The request as JSON (what node/warm.py reads with json.loads), without `json`.

    Every character outside printable ASCII, and the two JSON reserves, is a
    \\u escape, as json.dumps writes it (lone surrogates from undecodable
    argv bytes included, so the worker gets back the very same strings).
    """
    pairs = ",".join(f"{_string(key)}:{_string(value)}" for key, value in env.items())
    items = ",".join(_string(item) for item in argv)
    return f'{{"argv":[{items}],"cwd":{_string(cwd)},"env":{{{pairs}}}}}'.encode("ascii")


def _string(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = []
    for char in text:
        code = ord(char)
        if 0x20 <= code < 0x7F and char not in '"\\':
            out.append(char)
        elif code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
        else:
            out.append(f"\\u{code:04x}")
    return '"' + "".join(out) + '"'
