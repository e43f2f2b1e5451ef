"""A warm worker for rise-send: the daemon keeps the imports done, so a send costs milliseconds.

`rise-send` spends about 0.3 s starting Python and importing SQLAlchemy,
PyNaCl and the rest before 20 ms of real work; for a chat over live links
that start-up is most of the latency. When `rise-daemon` runs, it forks this
worker first, before any thread exists (so forking it again is safe): the
worker imports what a send needs and waits on a Unix socket in the node
directory. `rise-send` (rise_dtn/cli/quick.py) connects, passes its argv,
working directory, RISE_* variables and its stdin, stdout and stderr (as
file descriptors, SCM_RIGHTS), and a child the worker forked ahead of time
(waiting in accept()) runs the very same command there; the exit status
comes back over the socket.

Only the same user may use it: the socket is 0600 in the 0700 node
directory, and the worker checks the caller's uid (SO_PEERCRED). With no
worker listening, rise-send simply does the work itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

SOCKET_NAME = "send.sock"
MAX_REQUEST_BYTES = 1 << 16
# A real rise-send sends its request right after connecting; a caller silent
# this long is stuck or hostile, and its child gives up on it. Generous: on
# a loaded machine a real caller must never be taken for a silent one (it
# would then report the worker gone), and the wait holds up no one else.
REQUEST_SECONDS = 60.0
LENGTH = struct.Struct(">I")
SPARE_DIED_PAUSE = 0.1  # seconds
# A new spare prepares (`ready`) only once it has waited this long without a caller:
# it is forked as the previous one's send starts, and preparing at once would take
# a core from that send and its way over the network. A caller in the meantime (a
# burst of sends) is served at once, unprepared.
READY_AFTER_SECONDS = 0.03
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


Command = Callable[[list[str]], int]  # runs rise-send with these arguments, returns its exit status


def start(
    home: Path,
    *,
    command: Command,
    preload: Callable[[], None],
    ready: Callable[[], None] = lambda: None,
) -> int | None:
    """Fork the worker for `home`; its pid, or None if it cannot run here.

    `preload` imports what a send needs (once, in the worker); `ready`
    prepares each forked child while it waits for a caller (what it does
    there is off a send's path); `command` runs one rise-send in it. Both come from the command
    line layer, which this module must not import.

    Call before any thread starts. The worker dies with the caller
    (PR_SET_PDEATHSIG), so a daemon killed with -9 leaves no worker behind,
    only a socket nobody answers, which rise-send then ignores.
    """
    if threading.active_count() != 1:
        return None  # forking a threaded process could copy a held lock
    path = socket_path(home)
    if _answers(path):
        return None  # another daemon for this node has its own worker
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old_mask = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_mask)
        listener.listen(64)
    except OSError:
        listener.close()
        return None  # a path too long for a Unix socket, a read-only home: no worker
    parent = os.getpid()
    pid = os.fork()
    if pid:
        listener.close()
        return pid
    try:  # the worker
        from rise_dtn.node.toss.parallel import die_with

        die_with(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the daemon, which stops us
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
        preload()
        _serve(listener, command, ready)
    finally:
        os._exit(0)


def stop(home: Path, pid: int | None) -> None:
    """End the worker (its children finish the sends they run) and remove its socket.

    SIGKILL, not SIGTERM: the worker has nothing to tidy, and a SIGTERM that
    lands while the just-forked worker still runs the interpreter's at-fork
    hooks raises there, where the exception is ignored; the worker then
    served on and this wait never ended (a daemon that failed to bind its
    port, at once after starting the worker, hung).
    """
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    with contextlib.suppress(FileNotFoundError):
        socket_path(home).unlink()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _serve(listener: socket.socket, command: Command, ready: Callable[[], None]) -> None:
    """Keep one child forked ahead, waiting in accept(): a send then starts in a process
    that exists already, with no fork (and no second wake-up) between the caller's
    connect and its work. The spare says when it has a caller, through a pipe of its
    own, and the worker forks the next; a spare that died first closes that pipe, and
    the next is forked all the same. Each child serves one caller only: a caller that
    connects and says nothing (or is slow) holds up only its own child, never the next
    send."""
    worker = os.getpid()
    while True:
        taken, tell = os.pipe()
        if os.fork() == 0:
            os.close(taken)
            _spare(listener, command, ready, worker, tell)  # never returns
        os.close(tell)
        try:
            caller = os.read(taken, 1)  # b"!" once it has a caller; b"" if it died first
        finally:
            os.close(taken)
        if not caller:
            time.sleep(SPARE_DIED_PAUSE)  # a spare that cannot accept is not forked in a loop


def _spare(
    listener: socket.socket,
    command: Command,
    ready: Callable[[], None],
    worker: int,
    tell: int,
) -> None:
    """A forked child: die with the worker while idle; once a caller came, tell the worker
    and serve the caller to the end even if the worker goes (a send is never cut)."""
    try:
        from rise_dtn.node.toss.parallel import PR_SET_PDEATHSIG, die_with

        die_with(worker)
        if not _caller_within(listener, READY_AFTER_SECONDS):
            with contextlib.suppress(Exception):  # a send does the same again, and says what fails
                ready()
        connection, _address = listener.accept()
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, 0)
        os.write(tell, b"!")
        os.close(tell)
        listener.close()
        connection.settimeout(REQUEST_SECONDS)
        request = _read_request(connection)
        if request is None:
            os._exit(0)
        connection.settimeout(None)
    except BaseException:  # noqa: BLE001 - a child never returns into the worker's loop
        os._exit(1)
    _run(connection, command, request)  # never returns


def _caller_within(listener: socket.socket, seconds: float) -> bool:
    """Whether a caller is waiting to be accepted, or comes within `seconds`."""
    waiting = select.poll()
    waiting.register(listener, select.POLLIN)
    return bool(waiting.poll(seconds * 1000))


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    """What a rise-send hands over: its arguments, directory, RISE_* variables, stdio."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    fds: list[int]


def _read_request(connection: socket.socket) -> _Request | None:
    """The caller's argv, cwd, RISE_* variables and stdio, if it is us and makes sense."""
    fds: list[int] = []
    try:
        raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        _pid, uid, _gid = _CREDENTIALS.unpack(raw)
        data, fds, _flags, _address = socket.recv_fds(connection, MAX_REQUEST_BYTES, 3)
        if uid != os.getuid() or len(fds) != 3 or len(data) < LENGTH.size:
            raise ValueError("not a request")
        (length,) = LENGTH.unpack_from(data)
        body = bytearray(data[LENGTH.size :])
        while len(body) < length <= MAX_REQUEST_BYTES:
            more = connection.recv(length - len(body))
            if not more:
                raise ValueError("truncated request")
            body += more
        request = json.loads(body)
        argv, cwd, env = request["argv"], request["cwd"], request["env"]
        if not (
            isinstance(argv, list)
            and all(isinstance(item, str) for item in argv)
            and isinstance(cwd, str)
            and isinstance(env, dict)
            and all(
                isinstance(k, str) and k.startswith("RISE_") and isinstance(v, str)
                for k, v in env.items()
            )
        ):
            raise ValueError("malformed request")
    except (OSError, ValueError, KeyError, TypeError):
        for fd in fds:
            os.close(fd)
        return None
    return _Request(argv, cwd, env, fds)


def _run(connection: socket.socket, command: Command, request: _Request) -> None:
    """In the forked child: become the caller's rise-send, run, report the exit status."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(request.fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request.cwd)
        for key in [key for key in os.environ if key.startswith("RISE_")]:
            del os.environ[key]
        os.environ.update(request.env)
        code = command(request.argv)
    except BaseException:  # noqa: BLE001 - the child must always answer and exit
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        with contextlib.suppress(OSError):
            connection.sendall(f"{int(code)}\n".encode())
        os._exit(0)
