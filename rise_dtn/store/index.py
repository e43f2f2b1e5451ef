"""The spool index: SQLAlchemy 2 on SQLite (WAL) by default, any URL by config.

The bundle tables are a cache of the spool files (`rise-check --repair`
rebuilds them). Two tables are not derivable from files and are the index's
own truth: `seen` (which bundle ids were already delivered, so a replay is
refused) and `inbox` (which messages a user has read). Timestamps are
passed in; this module never reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, Integer, String, event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from rise_dtn.core.errors import StorageError


class Base(DeclarativeBase):
    pass


class SpoolEntry(Base):
    """One bundle file in tx/ or rx/ (cache of the file and its header)."""

    __tablename__ = "spool_entry"
    bundle_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    direction: Mapped[str] = mapped_column(String(2), primary_key=True)  # "tx" or "rx"
    neighbour: Mapped[str] = mapped_column(String(26), index=True)
    size: Mapped[int] = mapped_column(Integer)
    expiry: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer)
    queued_at: Mapped[int] = mapped_column(Integer)
    copies: Mapped[int] = mapped_column(Integer, default=0)  # times written to a carrier


class Release(Base):
    """A tx bundle the neighbour confirmed (or that was moved with --move)."""

    __tablename__ = "release"
    bundle_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    neighbour: Mapped[str] = mapped_column(String(26), index=True)
    size: Mapped[int] = mapped_column(Integer)
    released_at: Mapped[int] = mapped_column(Integer)
    how: Mapped[str] = mapped_column(String(16))  # "acked", "moved", "expired"


class PendingAck(Base):
    """A hop ack owed to a neighbour: the bundle was verified and processed here.

    Acks are owed only after toss (delivered, duplicate or expired), never for
    a bundle that is merely stored: a corrupt copy must not release the
    sender's good one (docs/protocol.md, "Hop acks").
    """

    __tablename__ = "pending_ack"
    bundle_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    neighbour: Mapped[str] = mapped_column(String(26), primary_key=True)
    created: Mapped[int] = mapped_column(Integer)


class Seen(Base):
    """An end-to-end bundle this node has accepted: replays are refused by id."""

    __tablename__ = "seen"
    bundle_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    expiry: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(12))  # "delivering" then "delivered"
    sender: Mapped[str] = mapped_column(String(26))
    target: Mapped[str] = mapped_column(String(4096))  # where the payload goes
    at: Mapped[int] = mapped_column(Integer)


class InboxMessage(Base):
    """A message delivered to this node, stored as a file under inbox/."""

    __tablename__ = "inbox"
    bundle_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    sender: Mapped[str] = mapped_column(String(26))
    sender_name: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[int] = mapped_column(Integer, index=True)
    size: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(4096))
    read: Mapped[bool] = mapped_column(sqlalchemy.Boolean, default=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed "seen" row survives power loss, which is what makes
    # "never delivered twice" hold across a crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Index:
    """A session factory over the index database."""

    def __init__(self, url: str) -> None:
        try:
            self.engine: Engine = sqlalchemy.create_engine(url)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open the index at {url}: {_reason(exc)}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on a clean exit, rolled back otherwise."""
        try:
            with Session(self.engine) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(f"index failure: {_reason(exc)}") from None

    def close(self) -> None:
        self.engine.dispose()

    # The few queries used in more than one place.

    def seen_state(self, bundle_id: str) -> Seen | None:
        with self.session() as session:
            row = session.get(Seen, bundle_id)
            if row is not None:
                session.expunge(row)
            return row

    def count(self, model: type[Base], **where: Any) -> int:
        with self.session() as session:
            query = select(func.count()).select_from(model).filter_by(**where)
            return int(session.execute(query).scalar_one())


def _reason(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:200]
