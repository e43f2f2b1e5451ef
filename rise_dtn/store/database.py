"""The index's database: one write lock taken first, reads that never queue, one-line errors.

Every index method that writes is one *write transaction*, and a write
transaction takes the database's single write lock before its first
statement. That is what makes a check-then-write method atomic across
processes: `put_entry` ("released already? then do not list it") and
`mark_delivered` ("the first receipt only") see nothing change between
their check and their write, whichever process (rise-send, rise-daemon,
rise-xfer, rise-toss) runs beside them.

- SQLite: `BEGIN IMMEDIATE`. The sqlite3 module's own transaction handling
  sends no BEGIN before a SELECT (only before the first INSERT, UPDATE or
  DELETE), so a check ran outside any transaction and another process could
  commit between it and the write. We turn that handling off on connect
  (`isolation_level = None`) and emit BEGIN ourselves in SQLAlchemy's
  "begin" event: the recipe of SQLAlchemy's SQLite dialect documentation
  ("Serializable isolation / Savepoints / Transactional DDL"). A waiting
  writer waits in SQLite's busy handler (`busy_timeout`), not in Python.
- PostgreSQL: `pg_advisory_xact_lock` on one key, taken as the first
  statement and held to commit or rollback. This emulates SQLite's single
  writer, so both databases run the same code with the same meaning. The
  alternative, SERIALIZABLE with a retry loop, would let writers overlap,
  which an index written a few times per bundle has no use for, and every
  method would have to be safe to re-run after a serialization failure
  (callers pass in values they computed from files they already moved).
  Advisory locks are per database, so nodes sharing one server (one
  database each) do not wait for each other. `lock_timeout` gives a writer
  stuck behind another the same 30 s that SQLite's busy timeout gives.

Read transactions take no lock: on SQLite a deferred BEGIN (a snapshot of
the WAL, so readers never queue behind a writer), on PostgreSQL a READ ONLY
transaction (so a write slipped into one fails loudly instead of escaping
the write lock). A read transaction must never write: on SQLite a write
there would take the lock only at that statement, after its checks.

Drivers are imported by SQLAlchemy when the engine is made, never here: a
missing one is a one-line error naming what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, MetaData, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from rise_dtn.core.errors import NoSpaceError, StorageError, UsageError
from rise_dtn.store.plain_index import (
    BUSY_TIMEOUT_SECONDS,
    NO_SPACE_MESSAGE,
    SQLITE_NO_SPACE,
    configure,
)

# The advisory lock every write transaction takes on PostgreSQL: any fixed
# 64-bit key will do, as long as every rise-dtn process uses the same one.
# These are the ASCII bytes of "riseindx".
WRITE_LOCK_KEY = 0x72697365_696E6478

# How long to wait for a PostgreSQL server to answer before reporting it
# unreachable (TCP's own time-out is minutes); a URL may set its own.
CONNECT_TIMEOUT_SECONDS = 10

# The execution option that marks a read transaction (see `reading`).
_READ_ONLY = "rise_read_only"

# The databases whose write lock this module knows how to take.
_WRITE_LOCKS = {"sqlite", "postgresql"}

# The pip extra that brings each driver rise-dtn documents.
_EXTRAS = {"psycopg": "rise-dtn[postgres]"}


def open_engine(url: str | URL) -> Engine:
    """An engine for `url` whose transactions start as this module says."""
    parsed = _parse(url)
    if parsed.get_backend_name() not in _WRITE_LOCKS:
        raise UsageError(
            f"the index URL {_shown(parsed)} names {parsed.get_backend_name()}: "
            "rise-dtn's index runs on sqlite or postgresql"
        )
    try:
        engine = sqlalchemy.create_engine(parsed, **_engine_options(parsed))
    except ImportError as exc:
        module = (exc.name or "the driver").split(".")[0]
        extra = _EXTRAS.get(module, module)
        raise UsageError(
            f"the index URL {_shown(parsed)} needs the Python package {module}: "
            f"pip install '{extra}'"
        ) from None
    except SQLAlchemyError as exc:
        raise index_error(exc, f"cannot use the index URL {_shown(parsed)}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "begin", _postgresql_begin)
    return engine


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create what is missing of `metadata`; look first without the write lock.

    Every command opens the index, and most only read it: they must not
    queue behind a daemon's write for a check that finds every table there.
    Creating runs in a write transaction, so processes starting together on
    a new node do not race table by table (DDL is transactional on both).
    """
    try:
        with _transaction(engine, read_only=True) as connection:
            present = set(inspect(connection).get_table_names())
        if all(table.name in present for table in metadata.sorted_tables):
            return
        with _transaction(engine, read_only=False) as connection:
            metadata.create_all(connection)
    except SQLAlchemyError as exc:
        raise index_error(exc, f"cannot open the index at {_shown(engine.url)}") from None


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: holds the write lock from its start; committed on a clean exit."""
    try:
        with _transaction(engine, read_only=False) as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise index_error(exc, "index failure") from None


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read transaction: a consistent snapshot, no lock; it must not write."""
    try:
        with _transaction(engine, read_only=True) as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise index_error(exc, "index failure") from None


@contextmanager
def _transaction(engine: Engine, *, read_only: bool) -> Iterator[Connection]:
    with engine.connect() as connection:
        if read_only:
            connection.execution_options(**{_READ_ONLY: True})
        with connection.begin():
            yield connection


def _read_only(connection: Connection) -> bool:
    return bool(connection.get_execution_options().get(_READ_ONLY, False))


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The set-up a direct send's own connection shares (store/plain_index.py);
    # BEGIN is emitted by _sqlite_begin, and nothing else.
    configure(dbapi_connection)


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN" if _read_only(connection) else "BEGIN IMMEDIATE")


def _postgresql_begin(connection: Connection) -> None:
    if _read_only(connection):
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
    else:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")


def _engine_options(url: URL) -> dict[str, Any]:
    if url.get_backend_name() != "postgresql":
        return {}
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if "options" not in url.query:
        connect_args["options"] = f"-c lock_timeout={BUSY_TIMEOUT_SECONDS}s"
    return {"connect_args": connect_args}


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        # Not the text itself: it may hold a password.
        raise UsageError(
            "invalid index URL: expected dialect[+driver]://user@host/database"
        ) from None


def _shown(url: URL) -> str:
    """The URL as it may be printed: without its password."""
    return url.render_as_string(hide_password=True)


def index_error(exc: SQLAlchemyError, what: str) -> StorageError:
    """The one line a user sees for a database failure (the driver's first line)."""
    if getattr(getattr(exc, "orig", None), "sqlite_errorcode", None) in SQLITE_NO_SPACE:
        return NoSpaceError(NO_SPACE_MESSAGE)
    text = str(getattr(exc, "orig", None) or exc)
    reason = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return StorageError(f"{what}: {reason}")
