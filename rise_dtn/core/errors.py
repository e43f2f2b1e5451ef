"""The error hierarchy and exit codes every layer shares.

Errors are split by whose fault they are: untrusted input (a bundle, a card,
a neighbour) versus the caller's own mistake. Decoders of untrusted bytes
raise only `BundleError` or `PeerError`; the fuzz tests hold that line.
Only `cli/main.py` turns these into stderr lines and exit codes.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes, documented in every man page (EXIT STATUS)."""

    OK = 0
    FAILURE = 1  # an unexpected failure: a bug or an environment problem
    USAGE = 2  # bad arguments, unknown peer name, missing node
    REJECTED = 3  # some input was rejected (quarantined or dropped); the rest went on
    PEER = 4  # a card or a neighbour was refused
    NO_SPACE = 5  # the disk is full; nothing was lost, retry once space returns
    BUSY = 6  # another process holds the lock this command needs
    INTERRUPTED = 130  # stopped by the user (SIGINT)


class RiseError(Exception):
    """Root of every error rise-dtn reports to a user with a one-line message."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BundleError(RiseError):
    """An untrusted bundle (or ack) is malformed, tampered, expired or unwanted."""

    exit_code = ExitCode.REJECTED


class Deferred(RiseError):
    """A sound bundle this node cannot take yet (a relay quota is full): it stays
    where it is, unacknowledged, and is tried again by the next toss."""

    exit_code = ExitCode.BUSY


class PeerError(RiseError):
    """An untrusted card or neighbour is malformed, unknown or refused."""

    exit_code = ExitCode.PEER


class FrameError(PeerError):
    """A frame from a serial line, TNC or radio is malformed (KISS, AX.25 or the
    serial frame format of docs/protocol.md section 23).

    The one-shot decoders raise it; the streaming decoders never raise on what
    arrives, they drop the frame and count the reason instead, because a noisy
    line must not end a session.
    """


class UsageError(RiseError):
    """The caller asked for something that cannot be done as asked."""

    exit_code = ExitCode.USAGE


class StorageError(RiseError):
    """The local spool or disk failed (full disk, I/O error, broken index)."""

    exit_code = ExitCode.FAILURE


class NoSpaceError(StorageError):
    """The disk filled up; the operation was rolled back and can be retried."""

    exit_code = ExitCode.NO_SPACE


class BusyError(RiseError):
    """Another process holds a lock that this command needs."""

    exit_code = ExitCode.BUSY
