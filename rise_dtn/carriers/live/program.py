"""Why a link's command (`exec:COMMAND`, `ssh://`, `rise-call --command`) did not start.

A command that cannot be started still "connects": the shell starts, says
why on stderr and exits 127 (not found) or 126 (not executable), and the
caller sees its pipes close during the handshake, which reads as the other
node's refusal. After such a failure the caller asks here instead, and
names the program and the operating system's reason. This module only looks
at the file system; it never runs anything.
"""

from __future__ import annotations

import errno
import os
import shlex
import stat

NOT_FOUND = 127  # POSIX sh: the command was not found
NOT_EXECUTABLE = 126  # POSIX sh: found, but could not be executed

# First words that the shell itself runs (no file on disk to look for), and
# characters after which the shell, not the word, names the program.
_SHELL_WORDS = frozenset(
    [
        "!",
        ".",
        ":",
        "case",
        "cd",
        "command",
        "eval",
        "exec",
        "export",
        "for",
        "if",
        "readonly",
        "set",
        "time",
        "trap",
        "until",
        "while",
    ]
)
_EXPANDED = frozenset("$`~*?[(){};|&<>")


def not_started(command: str, returncode: int | None) -> tuple[str, bool] | None:
    """The one-line reason the shell could not start `command`, or None if it did start.

    The flag says whether the reason names the program itself (then the
    shell's own message adds nothing); otherwise it is the command's exit
    status, and the command's stderr (a remote shell's, over ssh) says which.
    """
    if returncode not in (NOT_FOUND, NOT_EXECUTABLE):
        return None
    program = _program(command)
    reason = _why_not(program) if program is not None else None
    if reason is not None:
        return f"cannot start the command {command!r}: {reason}", True
    what = "was not found" if returncode == NOT_FOUND else "could not be executed"
    return (
        f"the command {command!r} exited {returncode}: a program it runs {what}"
        " (its own message says which)",
        False,
    )


def _program(command: str) -> str | None:
    """The program the shell looks for first, if the command names it plainly."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        words.pop(0)  # VAR=value before the program
    if not words or words[0] in _SHELL_WORDS or _EXPANDED & set(words[0]):
        return None
    return words[0]


def _why_not(program: str) -> str | None:
    """The operating system's reason `program` cannot be run (as execvp looks), or None."""
    if "/" in program:
        candidates = [program]
    else:
        path = os.environ.get("PATH", os.defpath)
        candidates = [os.path.join(folder or ".", program) for folder in path.split(os.pathsep)]
    refused = None
    for candidate in candidates:
        try:
            mode = os.stat(candidate).st_mode
        except OSError as exc:
            if "/" in program:
                return f"{program}: {exc.strerror}"
            continue
        if stat.S_ISDIR(mode):
            refused = refused or f"{candidate}: {os.strerror(errno.EISDIR)}"
        elif not os.access(candidate, os.X_OK):
            refused = refused or f"{candidate}: {os.strerror(errno.EACCES)}"
        else:
            return None
    return refused or f"{program}: not found in any folder of PATH"
