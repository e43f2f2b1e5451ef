"""The on_delivery hook: a command run after each delivery, whose failure never stops a toss."""

from __future__ import annotations

import os
import shlex
import subprocess

from rise_dtn.node.home import Home
from rise_dtn.node.toss.toss_events import Delivered

ON_DELIVERY_TIMEOUT_SECONDS = 60  # a notifier, not a job runner: keep toss moving


def notify(home: Home, event: Delivered) -> str | None:
    """Run the configured on_delivery command; its failure never stops the toss.

    Returns a one-line warning if the command could not run or failed.
    A per-peer on_delivery = "" turns the node-wide one off for that peer.
    """
    config = home.config
    command = config.peer(event.sender).on_delivery
    if command is None:
        command = config.on_delivery
    if not command:
        return None
    environment = dict(os.environ)
    environment.update(
        RISE_BUNDLE_ID=str(event.bundle_id),
        RISE_KIND=event.kind.name.lower(),
        RISE_SENDER=event.sender,
        RISE_PATH=str(event.path),
        RISE_SIZE=str(event.size),
        RISE_HOME=str(home.path),
    )
    try:
        result = subprocess.run(
            shlex.split(command),
            env=environment,
            stdin=subprocess.DEVNULL,
            timeout=ON_DELIVERY_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"on_delivery command timed out after {ON_DELIVERY_TIMEOUT_SECONDS} s"
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return f"on_delivery command could not run: {exc}"
    if result.returncode != 0:
        return f"on_delivery command exited with status {result.returncode}"
    return None
