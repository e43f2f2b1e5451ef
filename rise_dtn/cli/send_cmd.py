"""rise send / rise-send: queue a file or a message for a peer."""

from __future__ import annotations

import random
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from rise_dtn.cli.common import (
    home_option,
    now,
    open_home,
    progress_bars,
    quiet_option,
    say,
    stream_progress,
)
from rise_dtn.core.errors import UsageError
from rise_dtn.core.units import human_bytes
from rise_dtn.node.config import (
    MAX_COPIES,
    MAX_HOPS,
    MIN_PART_BYTES,
    check_nice,
    parse_duration,
    parse_size,
)
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.send import send, split
from rise_dtn.node.send.options import RouteOptions

if TYPE_CHECKING:
    # Only a send over relays needs these (onion layers, route choice): a
    # direct send skips their imports.
    from rise_dtn.node.send import routed


@click.command("send")
@click.argument("source", metavar="FILE|-")
@click.argument("node")
@click.option("--name", help="Deliver as a file with this name (default: FILE's own name).")
@click.option("--nice", type=int, help="Priority 0 (urgent) .. 255 (bulk); default from config.")
@click.option("--lifetime", help="Drop the bundle if not delivered within this (30d, 12h, 3600).")
@click.option(
    "--hops",
    type=click.IntRange(0, MAX_HOPS),
    help="At least this many relays (0: direct), on a route drawn for this bundle alone; "
    "default from config.",
)
@click.option("--via", help="Force the route: relays by name or id, comma-separated, in order.")
@click.option(
    "--copies",
    type=click.IntRange(1, MAX_COPIES),
    help="Send this many copies over node-disjoint routes; delivered once.",
)
@click.option(
    "--wait", is_flag=True, help="If no route exists yet, hold the bundle until one does."
)
@click.option(
    "--part-size",
    metavar="SIZE",
    help="Send a file larger than SIZE (10MiB, 1GB) as parts of SIZE, each its own bundle, "
    "reassembled by NODE; default [send] part_size (unset: never split).",
)
@home_option
@quiet_option
def send_cmd(
    source: str,
    node: str,
    name: str | None,
    nice: int | None,
    lifetime: str | None,
    hops: int | None,
    via: str | None,
    copies: int | None,
    wait: bool,
    part_size: str | None,
    home_path: Path | None,
    quiet: bool,
) -> None:
    """Queue FILE (or stdin, with -) for NODE, sealed to it and signed by this node.

    FILE is delivered as a file into the peer's incoming directory; stdin is
    delivered as a message for `rise inbox`, unless --name makes it a file.
    The bundle waits in the spool until a carrier (`rise-xfer`) moves it.

    \b
    With --hops N (or [send] hops in the config) the bundle is wrapped in
    onion layers and goes over N relays of a route drawn fresh for it, to
    end at a relay next to NODE; each relay learns only its neighbours on
    the route. NODE sends a receipt back; `rise status ID` shows it.

    \b
    Examples:
      rise-send report.pdf bob
      echo 'meet at 6' | rise-send - bob
      tar c photos | rise-send --name photos.tar - bob
      rise-send --hops 2 report.pdf bob
      rise-send --via r1,r2 --copies 1 report.pdf bob
      echo 'safe' | rise-send --hops 2 --copies 2 --wait - bob
      rise-send --part-size 4MiB photos.tar bob   # for a small stick
    """
    home = open_home(home_path)
    if home.plain_index is None:
        home.prewarm_index()  # an index URL: SQLAlchemy's import overlaps the sealing
    peer = home.peers.find(node)
    if name is None and source != "-":
        name = Path(source).name
    options = send.SendOptions(
        name=name,
        nice=check_nice(nice) if nice is not None else None,
        lifetime_seconds=_lifetime(lifetime) if lifetime else None,
    )
    route = RouteOptions(hops=hops, copies=copies, via=tuple(_names(via)) if via else (), wait=wait)
    part_bytes = _part_bytes(part_size, home)
    if source != "-" and Path(source).is_dir():
        packed = shlex.quote(f"{Path(source).name}.tar")
        raise UsageError(
            f"{source} is a directory; a bundle carries one file: "
            f"tar cf - {shlex.quote(source)} | rise-send --name {packed} - {node}"
        )
    handle = send.open_source(source)
    with handle:
        total = send.regular_size(handle)
        if part_bytes is not None and name is not None and total is None:
            with split.staged(home, handle) as staged:  # a pipe: the parts need its size
                _send_staged(home, peer, staged, options, route, part_bytes, quiet=quiet)
            return
        if split.should_split(total, part_bytes, named=name is not None):
            assert part_bytes is not None
            _send_parts(home, peer, handle, options, route, part_bytes, quiet=quiet)
            return
        with progress_bars(quiet=quiet) as bars:
            update = stream_progress(bars, f"sealing for {peer.name}", name or "message", total)
            if route.routed(home):
                from rise_dtn.node.send import routed

                sent = routed.queue_routed(
                    home,
                    peer,
                    handle,
                    options=options,
                    route=route,
                    now=now(),
                    rng=random.SystemRandom(),
                    progress=update,
                )
            else:
                queued = send.queue(home, peer, handle, options=options, now=now(), progress=update)
    if route.routed(home):
        _report_routed(sent, home, quiet=quiet)
        return
    _report_direct(queued, peer.name, name, quiet=quiet)


def _report_direct(queued: send.Queued, peer_name: str, name: str | None, *, quiet: bool) -> None:
    click.echo(str(queued.bundle_id))  # also with -q: a script keeps it (rise-send(1))
    if not quiet:
        what = "file" if name is not None else "message"
        say(
            f"queued {what} for {peer_name}: {human_bytes(queued.payload_bytes)} "
            f"in a {human_bytes(queued.bundle_bytes)} bundle"
        )


def _part_bytes(part_size: str | None, home: Home) -> int | None:
    if part_size is None:
        return home.config.part_bytes
    try:
        size = parse_size(part_size)
    except UsageError as exc:
        raise UsageError(f"--part-size: {exc.message}") from None
    if size < MIN_PART_BYTES:
        raise UsageError(f"--part-size must be at least {human_bytes(MIN_PART_BYTES)}")
    return size


def _send_staged(
    home: Home,
    peer: Peer,
    staged: BinaryIO,
    options: send.SendOptions,
    route: RouteOptions,
    part_bytes: int,
    *,
    quiet: bool,
) -> None:
    """A pipe with --name, now in a file: parts if it is larger than a part, else one bundle."""
    if split.should_split(send.regular_size(staged), part_bytes, named=True):
        _send_parts(home, peer, staged, options, route, part_bytes, quiet=quiet)
        return
    if route.routed(home):
        from rise_dtn.node.send import routed

        sent = routed.queue_routed(
            home, peer, staged, options=options, route=route, now=now(), rng=random.SystemRandom()
        )
        _report_routed(sent, home, quiet=quiet)
        return
    queued = send.queue(home, peer, staged, options=options, now=now())
    _report_direct(queued, peer.name, options.name, quiet=quiet)


def _send_parts(
    home: Home,
    peer: Peer,
    handle: BinaryIO,
    options: send.SendOptions,
    route: RouteOptions,
    part_bytes: int,
    *,
    quiet: bool,
) -> None:
    """One bundle id per line (a script keeps them), then one summary line."""
    total = send.regular_size(handle) or 0
    use_route = route.routed(home)
    with progress_bars(quiet=quiet) as bars:
        update = stream_progress(
            bars, f"sealing parts for {peer.name}", options.name or "file", total
        )
        queued = split.queue_parts(
            home,
            peer,
            handle,
            options=options,
            part_bytes=part_bytes,
            now=now(),
            progress=update,
            route=route if use_route else None,
            rng=random.SystemRandom() if use_route else None,
        )
    for one in queued:
        click.echo(str(one.bundle_id))
    if not quiet:
        say(
            f"queued file for {peer.name}: {human_bytes(total)} in {len(queued)} parts "
            f"of at most {human_bytes(part_bytes)}"
        )


def _lifetime(text: str) -> int:
    """--lifetime in seconds; its error names the option, as a config error names the key."""
    try:
        return parse_duration(text)
    except UsageError as exc:
        raise UsageError(f"--lifetime: {exc.message}") from None


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--via needs at least one relay")
    return names


def _report_routed(sent: routed.RoutedQueued, home: Home, *, quiet: bool) -> None:
    click.echo(str(sent.bundle_id))
    if quiet:
        return
    if sent.held_because is not None:
        say(f"held for {sent.peer.name}: {sent.held_because}; it goes once a route exists")
        return
    from rise_dtn.node.send import routes

    names = routes.names(home)
    for copy in sent.copies:
        path = " -> ".join(names.get(relay, str(relay)[:8]) for relay in copy.relays)
        say(f"queued for {sent.peer.name} via {path} ({human_bytes(sent.payload_bytes)})")
