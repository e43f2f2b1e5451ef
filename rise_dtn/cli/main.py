"""The `rise` command group and the `rise-<verb>` aliases.

This is the one place where exceptions become a one-line message on stderr
and an exit code (STYLE.md section 4). A traceback is shown only with
RISE_DEBUG=1.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from typing import NoReturn

import click

from rise_dtn import __version__
from rise_dtn.core.errors import ExitCode, RiseError

# What click's version_option prints for every command (prog_name "rise-dtn").
VERSION_LINE = f"rise-dtn, version {__version__}"

# Subcommands are imported only when used, so `rise-send` does not pay for
# the QR and file-watching libraries (start-up time is latency for cron users).
COMMANDS = {
    "init": "rise_dtn.cli.init_cmd:init_cmd",
    "card": "rise_dtn.cli.card_cmd:card_cmd",
    "peer": "rise_dtn.cli.peer_cmd:peer_cmd",
    "send": "rise_dtn.cli.send_cmd:send_cmd",
    "toss": "rise_dtn.cli.toss_cmd:toss_cmd",
    "xfer": "rise_dtn.cli.xfer_cmd:xfer_cmd",
    "stat": "rise_dtn.cli.stat_cmd:stat_cmd",
    "status": "rise_dtn.cli.status_cmd:status_cmd",
    "map": "rise_dtn.cli.map_cmd:map_cmd",
    "check": "rise_dtn.cli.check_cmd:check_cmd",
    "inbox": "rise_dtn.cli.inbox_cmd:inbox_cmd",
    "queue": "rise_dtn.cli.queue_cmd:queue_cmd",
    "demo": "rise_dtn.cli.demo_cmd:demo_cmd",
    "call": "rise_dtn.cli.call_cmd:call_cmd",
    "daemon": "rise_dtn.cli.daemon_cmd:daemon_cmd",
    "bundle": "rise_dtn.cli.bundle_cmd:bundle_cmd",
    "caller": "rise_dtn.cli.caller_cmd:caller_cmd",
    "carriers": "rise_dtn.cli.carriers_cmd:carriers_cmd",
    "serial": "rise_dtn.cli.serial_cmd:serial_cmd",
    "imap": "rise_dtn.cli.imap_cmd:imap_cmd",
}


def load_command(name: str) -> click.Command:
    module_name, attribute = COMMANDS[name].split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    assert isinstance(command, click.Command)
    if not any(param.name == "version" for param in command.params):
        # Every rise-* command answers --version, as `rise` does.
        click.version_option(__version__, prog_name="rise-dtn")(command)
    return command


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None


@click.group("rise", cls=LazyGroup)
@click.version_option(__version__, prog_name="rise-dtn")
def group() -> None:
    """rise-dtn: store-and-forward, encrypted messaging for rarely connected machines.

    \b
    Start:     rise init --name alice; rise card > alice.card
    Trust:     rise peer add bob.card
    Send:      rise-send FILE bob; echo hi | rise-send - bob
    Carry:     rise-xfer /media/usb   (on both machines)
    Deliver:   rise-toss; rise inbox
    Relays:    rise peer add r1.card --relay; rise-send --hops 2 FILE bob
    Follow:    rise status; rise queue; rise map
    Inspect:   rise-stat; rise-check; rise carriers

    Every command takes --home DIR (default $RISE_HOME). See rise(7).
    """


class Terminated(BaseException):
    """SIGTERM or SIGHUP (an ssh session dropping, a service stopping).

    By default they kill the process on the spot; raised instead, every
    clean-up that runs for Ctrl-C (a half-sealed file in spool/tmp/, a
    partial copy on a medium: `finally` and `except BaseException`) runs for
    them too. Not a KeyboardInterrupt: click would print an empty line, and
    --watch loops end quietly on Ctrl-C (they set their own SIGTERM handler).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def _dispatch(command: click.Command, prog_name: str) -> int:
    """Run the command; turn every outcome into an exit code and at most one line."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)  # a command with its own handling replaces this
    try:
        result = command.main(prog_name=prog_name, standalone_mode=False)
    except Terminated as exc:
        click.echo(f"{prog_name}: stopped by {signal.Signals(exc.signum).name}", err=True)
        return 128 + exc.signum
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.FAILURE
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"{prog_name}: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    except RiseError as exc:
        click.echo(f"{prog_name}: {exc.message}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return ExitCode.OK  # the reader went away (e.g. `| head`): not our failure
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("RISE_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"{prog_name}: internal error: {type(exc).__name__}: {exc} "
            "(set RISE_DEBUG=1 for details, and please report it)",
            err=True,
        )
        return ExitCode.FAILURE
    return result if isinstance(result, int) else ExitCode.OK


def _run(command: click.Command, prog_name: str) -> None:
    _exit(_dispatch(command, prog_name))


def _exit(code: int) -> NoReturn:
    # Everything that matters is already durable (each step fsyncs and commits
    # before it reports). Skipping the interpreter's teardown of SQLAlchemy and
    # friends saves a tenth of a second on every command: latency for cron and
    # scripts. Flush what we printed, then leave.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    os._exit(int(code))


def rise() -> None:
    _run(group, "rise")


def _alias(name: str, prog_name: str) -> None:
    """A `rise-<verb>` command. `--version` alone is answered before the command's
    module (and SQLAlchemy, PyNaCl...) is imported: a script that checks the
    version pays Python's start-up and click's, not a tenth of a second more."""
    if sys.argv[1:] == ["--version"]:
        click.echo(VERSION_LINE)
        _exit(ExitCode.OK)
    _run(load_command(name), prog_name)


def rise_send() -> None:
    _alias("send", "rise-send")


def rise_toss() -> None:
    _alias("toss", "rise-toss")


def rise_xfer() -> None:
    _alias("xfer", "rise-xfer")


def rise_stat() -> None:
    _alias("stat", "rise-stat")


def rise_check() -> None:
    _alias("check", "rise-check")


def rise_call() -> None:
    _alias("call", "rise-call")


def rise_daemon() -> None:
    _alias("daemon", "rise-daemon")


def rise_bundle() -> None:
    _alias("bundle", "rise-bundle")


def rise_caller() -> None:
    _alias("caller", "rise-caller")


def rise_serial() -> None:
    _alias("serial", "rise-serial")


def rise_imap() -> None:
    _alias("imap", "rise-imap")
