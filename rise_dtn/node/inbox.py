"""Messages delivered to this node: list them, show one, mark it read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rise_dtn.core.errors import UsageError
from rise_dtn.node.home import Home


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    bundle_id: str
    sender_name: str
    sender_id: str
    received_at: int
    size: int
    path: Path
    read: bool


def messages(home: Home) -> list[Message]:
    return [
        Message(
            row.bundle_id,
            row.sender_name,
            row.sender,
            row.received_at,
            row.size,
            Path(row.path),
            row.read,
        )
        for row in home.index.messages()
    ]


def find(home: Home, prefix: str) -> Message:
    """A message by id or unique id prefix (as git does for commits)."""
    matches = [message for message in messages(home) if message.bundle_id.startswith(prefix)]
    if not matches:
        raise UsageError(f"no message {prefix!r} in the inbox (see `rise inbox`)")
    if len(matches) > 1:
        raise UsageError(f"{prefix!r} matches {len(matches)} messages; give more letters")
    return matches[0]


def mark_read(home: Home, bundle_id: str) -> None:
    home.index.mark_read(bundle_id)


def delete(home: Home, message: Message) -> None:
    message.path.unlink(missing_ok=True)
    home.index.delete_message(message.bundle_id)
