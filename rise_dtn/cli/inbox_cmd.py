"""rise inbox: read delivered messages."""

from __future__ import annotations

import datetime
import json
import shutil
import sys
from pathlib import Path

import click

from rise_dtn.cli.common import home_option, open_home, say
from rise_dtn.core.units import human_bytes
from rise_dtn.node import inbox


def _when(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


@click.group("inbox", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@home_option
@click.pass_context
def inbox_cmd(context: click.Context, as_json: bool, home_path: Path | None) -> None:
    """List delivered messages (id, time, sender, size; * marks unread)."""
    context.obj = home_path  # `rise inbox --home X show ID` works as well as `show --home X`
    if context.invoked_subcommand is not None:
        return
    home = open_home(home_path)
    messages = inbox.messages(home)
    if as_json:
        rows = [
            {
                "bundle_id": message.bundle_id,  # the key every command's JSON uses
                "sender": message.sender_name,
                "sender_id": message.sender_id,
                "received_at": message.received_at,
                "size": message.size,
                "read": message.read,
            }
            for message in messages
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for message in messages:
        mark = " " if message.read else "*"
        click.echo(
            f"{mark} {message.bundle_id}  {_when(message.received_at)}  "
            f"{message.sender_name:<16} {human_bytes(message.size)}"
        )
    if not messages:
        say("no messages")


@inbox_cmd.command("show")
@click.argument("message_id")
@home_option
@click.pass_obj
def show_cmd(group_home: Path | None, message_id: str, home_path: Path | None) -> None:
    """Print a message (by id or a unique prefix of it) and mark it read."""
    home = open_home(home_path or group_home)
    message = inbox.find(home, message_id)
    say(f"From: {message.sender_name} ({message.sender_id})")
    say(f"Date: {_when(message.received_at)}")
    with open(message.path, "rb") as handle:
        shutil.copyfileobj(handle, sys.stdout.buffer)
    sys.stdout.flush()
    inbox.mark_read(home, message.bundle_id)


@inbox_cmd.command("delete")
@click.argument("message_id")
@home_option
@click.pass_obj
def delete_cmd(group_home: Path | None, message_id: str, home_path: Path | None) -> None:
    """Delete a message from the inbox."""
    home = open_home(home_path or group_home)
    message = inbox.find(home, message_id)
    inbox.delete(home, message)
    say(f"deleted {message.bundle_id}")
