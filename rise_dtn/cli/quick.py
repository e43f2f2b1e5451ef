"""rise-send's entry point: hand the work to a running daemon's warm worker, else do it here.

This module imports nothing beyond the standard library's socket layer: its
whole point is to skip the ~0.3 s of imports (see rise_dtn/node/warm.py).
RISE_NO_DAEMON=1 turns the hand-off off.
"""

from __future__ import annotations

import json
import os
import socket
import struct
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


def preload_worker() -> None:
    """Import what a send uses, once in the worker, so that each child starts with it done."""
    # difflib: click's parser tries `-q` as a long option first, and the NoSuchOption it
    # raises and catches imports difflib for its suggestions (3 ms a send). bars: every
    # send imports it (not tqdm).
    import contextlib
    import difflib  # noqa: F401

    from rise_dtn.cli import bars  # noqa: F401
    from rise_dtn.cli.main import load_command
    from rise_dtn.node.send import onion_send, routed, routes, send  # noqa: F401
    from rise_dtn.store import index, transaction  # noqa: F401

    load_command("send")
    with contextlib.suppress(ImportError):
        import sqlalchemy.dialects.sqlite.pysqlite  # noqa: F401 - loaded on first connect
    from rise_dtn.store.warmup import warm_up

    warm_up()


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
    path = os.path.join(os.path.abspath(os.path.expanduser(home)), SOCKET_NAME)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        env = {key: value for key, value in os.environ.items() if key.startswith("RISE_")}
        body = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env}).encode()
        socket.send_fds(connection, [struct.pack(">I", len(body)) + body], [0, 1, 2])
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
