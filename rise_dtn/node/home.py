"""A node's home directory: key, config, peers, spool, incoming and inbox.

<home>/config.toml    settings, see rise-config(5)
<home>/node.key       secret keys (0600)
<home>/peers/         trusted cards
<home>/spool/         see spool/README.md
<home>/incoming/      delivered files, one folder per sender
<home>/inbox/         delivered messages
"""

from __future__ import annotations

import functools
import importlib
import os
import secrets
import shlex
import stat
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rise_dtn.core.card import Card, check_name
from rise_dtn.core.errors import StorageError, UsageError
from rise_dtn.core.identity import Identity, NodeId
from rise_dtn.node import config as config_module
from rise_dtn.node.peers import PeerBook
from rise_dtn.store.atomic import write_atomic
from rise_dtn.store.spool import Spool

if TYPE_CHECKING:
    from rise_dtn.store.index import Index
    from rise_dtn.store.plain_index import PlainIndex, PlainMap
    from rise_dtn.store.plain_relay_index import PlainRelayIndex
    from rise_dtn.store.relay_index import RelayIndex
    from rise_dtn.store.transaction import BundleTransaction

KEY_FILE = "node.key"
CONFIG_FILE = "config.toml"


def default_home() -> Path:
    env = os.environ.get("RISE_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs  # only without --home or $RISE_HOME: a cron line names its node

    return Path(platformdirs.user_data_dir("rise-dtn", appauthor=False))


def _check_key_mode(key_path: Path) -> None:
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UsageError(f"{key_path} is readable by others (mode {mode:o}); chmod 600 it")


def _check_not_writable_by_others(path: Path) -> None:
    """Refuse a home or config that another local user could change.

    Whoever can replace config.toml chooses the `on_delivery` command this
    node runs, as this node's user; whoever can write to the home can replace
    config.toml (and the key). So, as ssh does for ~/.ssh: owned by us, and
    writable by nobody else.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return  # a missing config.toml means the defaults; a missing home, no node
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"{path} belongs to another user (uid {info.st_uid}, mode {mode:o}), who could"
            " change what this node runs; use a node of your own"
        )
    if mode & 0o022:
        raise UsageError(
            f"{path} is writable by others (mode {mode:o}), who could change what this node"
            f" runs; chmod go-w {shlex.quote(str(path))}"
        )


class Home:
    """An opened node. Loads key, config and index lazily: cheap to construct."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()  # hooks and messages get paths that work from anywhere
        self.spool = Spool(self.path / "spool")
        self.peers = PeerBook(self.path / "peers")
        self.inbox_dir = self.path / "inbox"

    @classmethod
    def open(cls, path: Path | None) -> Home:
        home = cls(path or default_home())
        if not (home.path / KEY_FILE).exists():
            raise UsageError(f"no rise-dtn node at {home.path} (run `rise init --name NAME`)")
        # Every command refuses an exposed key or an open home, not only those
        # that happen to load the key or the config.
        _check_not_writable_by_others(home.path)
        _check_not_writable_by_others(home.path / CONFIG_FILE)
        _check_key_mode(home.path / KEY_FILE)
        return home

    @classmethod
    def create(cls, path: Path, *, name: str, address_schemes: Iterable[str] = ()) -> Home:
        """A new node at `path`; `address_schemes` (the installed carriers') are listed in
        its config.toml template."""
        check_name(name, error=UsageError)
        home = cls(path)
        if (path / KEY_FILE).exists():
            raise UsageError(f"a node already exists at {path}")
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)  # also an existing folder, and whatever the umask
            _check_not_writable_by_others(path)  # an existing folder of another user
            identity = Identity.from_seeds(secrets.token_bytes(32), secrets.token_bytes(32))
            write_atomic(
                path / CONFIG_FILE,
                config_module.render(name, schemes=address_schemes).encode(),
                mode=0o600,
            )
            home.spool.create()
            for directory in (home.peers.directory, home.inbox_dir, path / "incoming"):
                directory.mkdir(mode=0o700, exist_ok=True)
            # The index with all its tables now, so that even the first direct
            # send writes it without SQLAlchemy (store/plain_index.py).
            home.relay_index  # noqa: B018 - opening it creates the tables
            home.close()
            # The key goes last: its presence is what marks a complete node.
            write_atomic(path / KEY_FILE, identity.to_keyfile(), mode=0o600, what="saving the key")
        except OSError as exc:
            raise StorageError(f"cannot create the node at {path}: {exc.strerror}") from None
        return home

    @functools.cached_property
    def identity(self) -> Identity:
        key_path = self.path / KEY_FILE
        _check_key_mode(key_path)
        return Identity.from_keyfile(key_path.read_bytes())

    @functools.cached_property
    def config(self) -> config_module.Config:
        return config_module.load(self.path / CONFIG_FILE)

    def prewarm_index(self) -> None:
        """Import the index's libraries in the background while the caller seals.

        SQLAlchemy's import is most of a command's start-up; a send touches
        the index only at the end, so the import can overlap the sealing
        (which runs in libsodium and the kernel, outside the GIL).
        """
        threading.Thread(
            target=importlib.import_module, args=("rise_dtn.store.index",), daemon=True
        ).start()

    @functools.cached_property
    def index(self) -> Index:
        # Imported here: SQLAlchemy is the largest part of start-up, and
        # `--help`, `rise card` and `rise peer` never touch the index.
        # rise_dtn.store.index first and alone: prewarm_index may be importing it (and
        # SQLAlchemy) in a thread, and this import waits for that one to finish.
        from rise_dtn.store.index import Index, sqlite_file_url

        self.spool.check_exists()
        if self.config.index_url is not None:
            return Index(self.config.index_url)
        return Index(sqlite_file_url(self.spool.index_path))

    @functools.cached_property
    def relay_index(self) -> RelayIndex:
        from rise_dtn.store.relay_index import RelayIndex

        return RelayIndex(self.index)

    @functools.cached_property
    def bundles(self) -> BundleTransaction:
        """The one way into and out of this node's spool (store/transaction.py)."""
        from rise_dtn.store.transaction import BundleTransaction, Room

        def receive_max(neighbour: NodeId) -> int | None:
            peer = self.peers.by_id(neighbour)
            return self.config.receive_max(peer.name if peer else "")

        room = Room(min_free_bytes=self.config.min_free_bytes, receive_max=receive_max)
        return BundleTransaction(
            self.spool,
            lambda: self.fast_index,
            self.identity.node_id,
            room=room,
            plain_index=self.plain_index,
            full_index=lambda: self.index,
        )

    @functools.cached_property
    def fast_index(self) -> PlainIndex | Index:
        """The index for a sneakernet exchange and a direct toss: the default SQLite
        index written with `sqlite3`, so that `rise-xfer` and `rise-toss` need not
        import SQLAlchemy (store/plain_index.py, PlainIndex); else the Index."""
        if self.plain_index is not None:
            from rise_dtn.store.plain_index import PlainIndex

            self.spool.check_exists()
            plain = PlainIndex.open(self.plain_index)
            if plain is not None:
                return plain
        return self.index

    @functools.cached_property
    def fast_relay_index(self) -> PlainRelayIndex | RelayIndex:
        """A relay's routing records (forwards, replays, quotas, map refreshes): the
        default SQLite index written with `sqlite3`, so that a relay's `rise-xfer` and
        `rise-toss` need not import SQLAlchemy (store/plain_relay_index.py); else the
        RelayIndex, which creates the tables."""
        if self.plain_index is not None:
            from rise_dtn.store.plain_relay_index import PlainRelayIndex

            self.spool.check_exists()
            plain = PlainRelayIndex.open(self.plain_index)
            if plain is not None:
                return plain
        return self.relay_index

    @functools.cached_property
    def route_map(self) -> PlainMap | RelayIndex:
        """What a route is drawn from (the map's cards and links, the last route to
        each recipient): the default SQLite index read directly, so that a send over
        relays need not import SQLAlchemy (store/plain_index.py); else the RelayIndex."""
        if self.plain_index is not None:
            from rise_dtn.store.plain_index import PlainMap

            plain = PlainMap.open(self.plain_index)
            if plain is not None:
                return plain
        return self.relay_index

    @property
    def plain_index(self) -> Path | None:
        """The default index, the spool's SQLite file, which a direct send writes
        without SQLAlchemy (store/plain_index.py); None: the config names an index URL."""
        return self.spool.index_path if self.config.index_url is None else None

    def card(self, *, now: int, via: Sequence[NodeId] = ()) -> Card:
        """This node's card; `via` adds the relays next to it as ("via", id) addresses."""
        hints = tuple(("via", str(node_id)) for node_id in via)
        return Card.create(
            self.identity, name=self.config.name, addresses=self.config.addresses + hints, now=now
        )

    def incoming_dir(self, sender_name: str) -> Path:
        base = self.config.incoming or self.path / "incoming"
        return base / sender_name

    def close(self) -> None:
        if "fast_index" in self.__dict__ and self.fast_index is not self.__dict__.get("index"):
            self.fast_index.close()
        fast_relay = self.__dict__.get("fast_relay_index")
        if fast_relay is not None and fast_relay is not self.__dict__.get("relay_index"):
            fast_relay.close()
        # The map's own connection, opened again if the home is used after all.
        route_map = self.__dict__.get("route_map")
        if route_map is not None and route_map is not self.__dict__.get("relay_index"):
            route_map.close()
            del self.__dict__["route_map"]
        if "index" in self.__dict__:
            self.index.close()
