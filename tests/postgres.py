"""A real PostgreSQL server for the tests: found (or installed), started on loopback, stopped.

The index runs on any SQLAlchemy URL; the store tests and the relay tests
run a second time against PostgreSQL, each node with a database of its own
on one server per test session. The server is PostgreSQL's own binaries
(Debian's `postgresql` package, /usr/lib/postgresql/<version>/bin): when
they are missing and we are root, the fixture installs the package with
apt-get; only when that cannot be done are the PostgreSQL runs skipped, with
one line saying why.

The server runs from a fresh `initdb` in a temporary directory, listens on
127.0.0.1 on a free port and on a Unix socket in that directory, trusts
local connections, and is stopped (and its directory removed) at the end of
the session whatever happened. PostgreSQL refuses to run as root: as root
it runs as the `postgres` user (`runuser`), which owns the directory.
`fsync=off`: the tests check transactions between processes, not what
survives a power cut, and the machine is shared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SERVER_USER = "postgres"  # the OS user the server runs as when we are root
DATABASE_USER = "postgres"  # initdb's superuser
START_ATTEMPTS = 5  # a free port can be taken by another process before the server binds it
INSTALL_TIMEOUT_SECONDS = 900


class Unavailable(Exception):
    """PostgreSQL cannot be had on this machine; the message is the skip line."""


@dataclasses.dataclass
class PostgresServer:
    port: int
    names: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{DATABASE_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, label: str) -> str:
        """A new, empty database (named after `label`); its SQLAlchemy URL."""
        import psycopg

        slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:40]
        name = f"rise_{next(self.names)}_{slug}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={DATABASE_USER} dbname=postgres",
            autocommit=True,
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')  # name: [a-z0-9_] only
        return self.url(name)


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin/ directory, if any."""
    found = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").exists() and (path / "pg_ctl").exists()
    ]
    return max(found, key=lambda path: int(path.parent.name)) if found else None


def install() -> Path:
    """apt-get install postgresql (after apt-get update if the first try fails)."""
    if os.geteuid() != 0:
        raise Unavailable(
            "PostgreSQL tests skipped: no /usr/lib/postgresql/*/bin and not root to "
            "install it (apt-get install postgresql)"
        )
    if shutil.which("apt-get") is None:
        raise Unavailable("PostgreSQL tests skipped: no PostgreSQL and no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-qq", "postgresql"]
    for step in ([], ["apt-get", "update", "-qq"]):
        if step:
            subprocess.run(
                step, env=env, capture_output=True, check=False, timeout=INSTALL_TIMEOUT_SECONDS
            )
        result = subprocess.run(
            command, env=env, capture_output=True, check=False, timeout=INSTALL_TIMEOUT_SECONDS
        )
        found = binaries()
        if result.returncode == 0 and found is not None:
            return found
    last = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
    raise Unavailable(
        f"PostgreSQL tests skipped: apt-get install postgresql failed: {last[-1] if last else '?'}"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of our own for the duration of the block."""
    bin_dir = binaries() or install()
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", SERVER_USER, "--"] if as_root else []
    # Not under pytest's tmp_path: that is private to root, and the server's
    # user must reach its directory.
    base = Path(tempfile.mkdtemp(prefix="rise-postgres-"))
    data, log = base / "data", base / "server.log"
    if as_root:
        shutil.chown(base, SERVER_USER)
    pg_ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log)]
    started = False
    try:
        _run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", DATABASE_USER,
              "--auth=trust", "--encoding=UTF8", "--no-sync"])  # fmt: skip
        for _attempt in range(START_ATTEMPTS):
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} "
                f"-c unix_socket_directories={base} -c fsync=off "
                "-c max_connections=300"
            )
            result = subprocess.run(
                [*pg_ctl, "-w", "-t", "60", "-o", options, "start"],
                capture_output=True,
                check=False,
            )
            if result.returncode == 0:
                started = True
                break
        if not started:
            raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text(errors='replace')}")
        yield PostgresServer(port)
    finally:
        if started:
            subprocess.run(
                [*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, check=False
            )
        shutil.rmtree(base, ignore_errors=True)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr.decode(errors='replace')}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (started on first use)."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_server())
        except Unavailable as exc:
            pytest.skip(str(exc))
        yield server


IndexUrls = Callable[[str], str | None]


@pytest.fixture(params=["sqlite", "postgresql"])
def index_urls(request: pytest.FixtureRequest) -> IndexUrls:
    """For each node (by name), its index URL: None for the default SQLite in its spool,
    or a fresh PostgreSQL database of its own."""
    if request.param == "sqlite":
        return lambda _name: None
    server: PostgresServer = request.getfixturevalue("postgres")
    test = request.node.name
    return lambda name: server.create_database(f"{test}_{name}")
