"""rise bundle / rise-bundle: write or read a stream of bundles (tapes, CDs, pipes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO, cast

import click

from rise_dtn.carriers.stream import bundle_stream
from rise_dtn.cli.common import (
    home_option,
    now,
    open_home,
    progress_bars,
    quiet_option,
    say,
    warn,
)
from rise_dtn.cli.toss_cmd import finish_with_toss
from rise_dtn.core.errors import NoSpaceError, UsageError
from rise_dtn.core.units import human_bytes


def _open(path: str, mode: str) -> BinaryIO:
    if path == "-":
        return sys.stdout.buffer if "w" in mode else sys.stdin.buffer
    try:
        return cast(BinaryIO, open(path, mode))
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


@click.command("bundle")
@click.option("--out", "out_path", metavar="FILE|-", help="Write waiting bundles to FILE.")
@click.option("--in", "in_path", metavar="FILE|-", help="Read bundles for this node from FILE.")
@click.option("--to", "to_names", multiple=True, help="With --out: only for this peer (repeat).")
@click.option("--move", is_flag=True, help="With --out: remove written bundles from the spool.")
@click.option("--toss", "toss_too", is_flag=True, help="With --in: toss what was read.")
@home_option
@quiet_option
def bundle_cmd(
    out_path: str | None,
    in_path: str | None,
    to_names: tuple[str, ...],
    move: bool,
    toss_too: bool,
    home_path: Path | None,
    quiet: bool,
) -> None:
    """Write the waiting bundles as one stream (--out), or take them from one (--in).

    For carriers that only go one way: a tape, a CD, a shell pipeline. No
    acks travel back, so --out keeps the bundles in the spool unless --move.

    \b
    Examples:
      rise-bundle --out /media/cdrom/outgoing.rss
      rise-bundle --out - --to bob | ssh gateway rise-bundle --in - --toss
    """
    if (out_path is None) == (in_path is None):
        raise UsageError("give exactly one of --out FILE or --in FILE")
    home = open_home(home_path)
    if out_path is not None:
        neighbours = [home.peers.find(name).node_id for name in to_names] or None
        handle = _open(out_path, "wb")
        with handle, progress_bars(quiet=quiet) as bars:
            report = bundle_stream.write_stream(
                home, handle, neighbours=neighbours, move=move, now=now(), progress=bars
            )
        if not quiet:
            say(f"wrote {report.bundles} bundle(s), {human_bytes(report.bytes)}")
        return
    assert in_path is not None
    handle = _open(in_path, "rb")
    with handle, progress_bars(quiet=quiet) as bars:
        report = bundle_stream.read_stream(home, handle, now=now(), progress=bars)
    for line in report.rejected:
        warn("rise-bundle", f"rejected: {line}")
    for line in report.no_room:
        warn("rise-bundle", f"not taken: {line}")
    if not quiet:
        for line in report.skipped:
            say(f"note: skipped {line}")
        say(f"read {report.bundles} bundle(s), {human_bytes(report.bytes)}")
    finish_with_toss(home, rejected=len(report.rejected), toss_too=toss_too, quiet=quiet)
    if report.no_room:
        # After the toss: what was taken is delivered. The sender must write these again.
        raise NoSpaceError(
            f"no room in the spool for {len(report.no_room)} bundle(s); write them again "
            "once there is (see min_free in rise-config(5))"
        )
