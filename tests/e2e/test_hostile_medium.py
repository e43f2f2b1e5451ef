"""A medium prepared by someone hostile, through the installed `rise-xfer`: one line, go on.

Whoever held the stick chose what is on it: folders that are symbolic links
into our spool or anywhere else, files that are links to secrets or to
/dev/zero, FIFOs and devices named like bundles, a sparse ack of a
terabyte, names of 255 bytes or of odd bytes, thousands of junk folders, a
write-protected stick. Nothing on the medium may lead rise-xfer outside it,
make it hang, fill memory, or print a traceback; a bundle on the medium
never shares bytes with a spool. Each test runs the real commands on real
directories (a tmpfs where another filesystem or a read-only mount is the
point).
"""

from __future__ import annotations

import hashlib
import os
import resource
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, Node, command_env, make_node
from tests.e2e.test_bad_input import folder, quarantined, seal, send_good, stderr_lines
from tests.e2e.test_crash import mount_tmpfs, mounted_tmpfs, unmount

REJECTED, FAILURE, USAGE = 3, 1, 2


def rejected(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [line for line in stderr_lines(result) if line.startswith("rise-xfer: rejected: ")]


def digests(root: Path) -> dict[Path, str]:
    """Every regular file under `root` (links not followed) and a digest of its bytes."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def queued(node: Node, peer: Node) -> list[Path]:
    return sorted((node.spool / "tx" / peer.node_id).glob("*.rsb"))


# --- symbolic links: never followed, never created through (issue 9, defect 2) ----------------


def test_a_folder_linked_into_my_spool_leaves_my_outbox_alone(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    """STICK/rise-dtn/<bob>/<alice> -> bob's own tx/<alice>: once, bob quarantined his outbox."""
    alice, bob = pair
    for number in range(3):
        bob.run("rise-send", "-q", "-", "alice", input=f"reply {number}\n".encode())
    outbox = queued(bob, alice)
    before = digests(bob.spool / "tx")
    mine = stick / "rise-dtn" / bob.node_id
    mine.mkdir(parents=True)
    (mine / alice.node_id).symlink_to(bob.spool / "tx" / alice.node_id)

    result = bob.run("rise-xfer", "--toss", str(stick), check=False)

    assert result.returncode == REJECTED
    (line,) = rejected(result)
    assert f"{bob.node_id}/{alice.node_id}: a symbolic link where a folder belongs" in line
    assert digests(bob.spool / "tx") == before  # nothing read away, nothing quarantined
    assert not quarantined(bob)
    # The rest went on: bob's bundles for alice are on the stick, and still in his spool.
    written = sorted(path.name for path in folder(stick, alice, bob).glob("*.rsb"))
    assert written == [path.name for path in outbox]
    assert queued(bob, alice) == outbox


def test_links_to_elsewhere_are_never_written_through(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    """STICK/rise-dtn/<bob>/<alice> -> /any/dir: alice must not write bundles or acks there."""
    alice, bob = pair
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    send_good(alice, tmp_path)
    top = stick / "rise-dtn"
    (top / bob.node_id).mkdir(parents=True)
    (top / bob.node_id / alice.node_id).symlink_to(elsewhere)

    result = alice.run("rise-xfer", str(stick), check=False)

    assert result.returncode == REJECTED
    (line,) = rejected(result)
    assert "a symbolic link where a folder belongs, not followed" in line
    assert list(elsewhere.iterdir()) == []
    assert len(queued(alice, bob)) == 1  # waits for a medium it can write to

    # The whole tree linked away: nothing is read or written there either.
    (top / bob.node_id / alice.node_id).unlink()
    (top / bob.node_id).rmdir()
    top.rmdir()
    top.symlink_to(elsewhere)
    result = alice.run("rise-xfer", str(stick), check=False)
    assert result.returncode == REJECTED
    (line,) = rejected(result)
    assert f"{stick}/rise-dtn: a symbolic link where a folder belongs" in line
    assert list(elsewhere.iterdir()) == []

    # A good medium gets it, and bob's acks come back.
    top.unlink()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    acks_for_alice = top / alice.node_id / bob.node_id
    assert list(acks_for_alice.glob("*.rsa"))
    alice.run("rise-xfer", "-q", str(stick))
    assert queued(alice, bob) == []


def test_acks_are_not_written_through_a_linked_folder(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    send_good(alice, tmp_path)
    alice.run("rise-xfer", "-q", str(stick))
    (stick / "rise-dtn" / alice.node_id).mkdir()
    (stick / "rise-dtn" / alice.node_id / bob.node_id).symlink_to(elsewhere)

    result = bob.run("rise-xfer", "--toss", str(stick), check=False)

    assert result.returncode == REJECTED
    (line,) = rejected(result)
    assert f"{alice.node_id}/{bob.node_id}: a symbolic link" in line
    assert b"delivered file from alice" in result.stderr  # the rest went on
    assert list(elsewhere.iterdir()) == []
    (stick / "rise-dtn" / alice.node_id / bob.node_id).unlink()
    bob.run("rise-xfer", "-q", str(stick))  # the ack was kept owed, and goes now
    alice.run("rise-xfer", "-q", str(stick))
    assert queued(alice, bob) == []


def test_a_linked_file_is_never_read_or_copied(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    """A `.rsb` link to a local secret (or to one of our own bundles) is refused unread."""
    alice, bob = pair
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"RSB\x01 the key to the castle\n")
    good, _good_id = send_good(alice, tmp_path)
    alice.run("rise-xfer", "-q", str(stick))
    on_stick = folder(stick, bob, alice)
    (on_stick / "secret.rsb").symlink_to(secret)
    _id, own = seal(alice, bob)
    (tmp_path / "own.rsb").write_bytes(own)
    (on_stick / "own.rsb").symlink_to(tmp_path / "own.rsb")
    atime = secret.stat().st_atime_ns

    result = bob.run("rise-xfer", "--toss", str(stick), check=False)

    assert result.returncode == REJECTED
    lines = rejected(result)
    assert len(lines) == 2, lines
    for name in ("secret.rsb", "own.rsb"):
        (line,) = [line for line in lines if f"/{name}: " in line]
        assert line.endswith(": a symbolic link, not read")
    assert (bob.incoming / "alice" / "good.txt").read_bytes() == good
    assert not quarantined(bob)
    for path in (bob.spool).rglob("*"):
        if path.is_file():
            assert b"the key to the castle" not in path.read_bytes(), path
    assert secret.stat().st_atime_ns == atime  # not even opened
    assert (on_stick / "secret.rsb").is_symlink()  # left alone


# --- acks: bounded reads, regular files only (defect 3) --------------------------------------


def test_huge_and_endless_acks_are_refused_in_one_line(
    pair: tuple[Node, Node], stick: Path
) -> None:
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"waiting\n")
    alice.run("rise-xfer", "-q", str(stick))
    acks = folder(stick, alice, bob)
    (acks / "zero.rsa").symlink_to("/dev/zero")
    with open(acks / "sparse.rsa", "wb") as handle:
        handle.truncate(1 << 40)  # a terabyte of holes: no block used
    (acks / "big.rsa").write_bytes(b"RSA\x01" + bytes(200_000))

    # A memory limit far below a terabyte: a whole read would die here, not pass.
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    result = subprocess.run(
        [str(BIN / "rise-xfer"), str(stick)],
        env=command_env(alice.home),
        capture_output=True,
        timeout=120,
        check=False,
        preexec_fn=limit_memory,
    )

    assert result.returncode == REJECTED, result.stderr
    lines = rejected(result)
    assert len(lines) == 3, lines
    (zero,) = [line for line in lines if "zero.rsa" in line]
    assert zero.endswith("zero.rsa: a symbolic link, not read")
    for name in ("sparse.rsa", "big.rsa"):
        (line,) = [line for line in lines if f" {name}: " in line]
        assert line.endswith("ack rejected: ack is too large")
        assert not (acks / name).exists()  # rejected acks are removed, as before
    assert (acks / "zero.rsa").is_symlink()
    assert len(queued(alice, bob)) == 1


# --- FIFOs, devices, sockets: never opened for reading, never a hang (defect 4) -------------


def test_fifos_devices_and_sockets_named_like_bundles_do_not_hang(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    good, _good_id = send_good(alice, tmp_path)
    alice.run("rise-xfer", "-q", str(stick))
    bundles, acks = folder(stick, bob, alice), folder(stick, alice, bob)
    os.mkfifo(bundles / "fifo.rsb")
    os.mkfifo(acks / "fifo.rsa")
    specials = ["fifo.rsb"]
    try:
        os.mknod(bundles / "null.rsb", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        specials.append("null.rsb")
    except PermissionError:
        pass  # not root: FIFOs and a socket still make the point
    listener = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(bundles)  # a socket path is limited to 108 bytes
    try:
        listener.bind("socket.rsb")
    finally:
        os.chdir(cwd)
    specials.append("socket.rsb")
    try:
        result = bob.run("rise-xfer", "--toss", str(stick), check=False, timeout=60)
    finally:
        listener.close()

    assert result.returncode == REJECTED
    lines = rejected(result)
    assert len(lines) == len(specials), lines
    for name in specials:
        (line,) = [line for line in lines if f"/{name}: " in line]
        assert line.endswith(", not read"), line
    assert (bob.incoming / "alice" / "good.txt").read_bytes() == good
    assert not quarantined(bob)

    result = alice.run("rise-xfer", str(stick), check=False, timeout=60)

    assert result.returncode == REJECTED
    (line,) = rejected(result)
    assert line.endswith("/fifo.rsa: a FIFO, not read")
    assert b"confirmed 1" in result.stderr  # bob's real ack, beside it
    assert queued(alice, bob) == []


# --- names: long, odd bytes, many -----------------------------------------------------------


def test_long_and_odd_names_are_reported_and_quarantined_once(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    good, _good_id = send_good(alice, tmp_path)
    alice.run("rise-xfer", "-q", str(stick))
    on_stick = os.fsencode(folder(stick, bob, alice))
    long_name = b"x" * 251 + b".rsb"
    odd_name = b"\xff\xfe\x1b[31mred\nline.rsb"
    for name in (long_name, odd_name):
        with open(on_stick + b"/" + name, "wb") as handle:
            handle.write(b"garbage, not a bundle")

    result = bob.run("rise-xfer", "--toss", str(stick), check=False)

    assert result.returncode == REJECTED
    lines = rejected(result)
    assert len(lines) == 2, lines
    assert all("\x1b" not in line and "bad magic" in line for line in lines)
    assert [line for line in lines if "\\xff\\xfe\\x1b[31mred\\nline.rsb" in line]
    assert [line for line in lines if "x" * 70 + "..." in line]
    reasons = quarantined(bob)
    assert len(reasons) == 2
    assert all(name.startswith("from-medium-") for name in reasons)
    assert sorted(os.listdir(on_stick)) == []  # moved off the medium
    assert (bob.incoming / "alice" / "good.txt").read_bytes() == good


def test_a_huge_rejected_file_is_kept_in_quarantine_only_in_part(
    pair: tuple[Node, Node], stick: Path
) -> None:
    """A medium's holder cannot fill the spool with garbage through the quarantine."""
    alice, bob = pair
    junk = folder(stick, bob, alice) / "junk.rsb"
    with open(junk, "wb") as handle:
        handle.write(b"garbage, not a bundle")
        handle.truncate(5 << 30)  # 5 GiB, sparse: nothing of it is read but its first MiB
    result = bob.run("rise-xfer", str(stick), check=False)
    assert result.returncode == REJECTED
    assert len(rejected(result)) == 1
    reasons = quarantined(bob)
    assert reasons == {
        "junk.rsb": "not a rise-dtn bundle (bad magic) "
        f"(the first {1 << 20} of its {5 << 30} bytes kept)\n"
    }
    assert (bob.spool / "quarantine" / "junk.rsb").stat().st_size == 1 << 20
    assert not junk.exists()


def test_thousands_of_junk_folders_cost_no_line(pair: tuple[Node, Node], stick: Path) -> None:
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"through the junk\n")
    alice.run("rise-xfer", "-q", str(stick))
    mine = stick / "rise-dtn" / bob.node_id
    stranger = make_node(stick.parent, "stranger").node_id
    for number in range(3000):
        (mine / f"junk-{number:05d}").mkdir()
    (mine / "plain-file").write_bytes(b"not a folder")
    (mine / stranger).mkdir()  # a node bob does not know: left alone, no line

    result = bob.run("rise-xfer", "-q", "--toss", str(stick), check=False)

    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert bob.run("rise", "inbox", "--json").stdout.count(b'"bundle_id"') == 1


# --- nothing shared between spool and medium (defect 11, the medium part) -------------------


def assert_separate(one: Path, other: Path) -> None:
    first, second = one.stat(), other.stat()
    assert (first.st_dev, first.st_ino) != (second.st_dev, second.st_ino)
    assert first.st_nlink == second.st_nlink == 1


@pytest.mark.parametrize("place", ["spool's filesystem", "a tmpfs"])
def test_a_byte_changed_on_the_medium_never_changes_a_spool(
    pair: tuple[Node, Node], tmp_path: Path, place: str
) -> None:
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"x" * 100_000)
    (sent,) = queued(alice, bob)
    original = sent.read_bytes()
    if place == "a tmpfs":
        if mount_tmpfs(tmp_path / "usb", size="16m") is not None:
            pytest.skip("cannot mount a tmpfs here; needs root or CAP_SYS_ADMIN")
        stick = tmp_path / "usb"
    else:
        stick = tmp_path / "stick"
        stick.mkdir()
    try:
        alice.run("rise-xfer", "-q", str(stick))
        on_stick = folder(stick, bob, alice) / sent.name
        assert on_stick.read_bytes() == original
        assert_separate(sent, on_stick)
        with open(on_stick, "r+b") as handle:  # bit rot, or the stick's holder
            handle.seek(len(original) - 1)
            handle.write(bytes([original[-1] ^ 1]))
        assert sent.read_bytes() == original

        bob.run("rise-xfer", "-q", str(stick))  # takes it, no toss yet
        (taken,) = (bob.spool / "rx" / alice.node_id).glob("*.rsb")
        assert_separate(taken, on_stick)
        with open(on_stick, "r+b") as handle:  # changed back after bob took it
            handle.seek(len(original) - 1)
            handle.write(bytes([original[-1]]))
        assert taken.read_bytes() != original  # bob holds what he took, as he took it
    finally:
        if place == "a tmpfs":
            unmount(tmp_path / "usb")


# --- a read-only medium: take what waits for us, one line per thing not written --------------


def test_a_read_only_stick_still_brings_our_mail(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, bob = pair
    with mounted_tmpfs(tmp_path / "usb", size="16m") as stick:
        good, _good_id = send_good(alice, tmp_path)
        alice.run("rise-xfer", "-q", str(stick))
        alice.run("rise-send", "-q", "-", "bob", input=b"for the next trip\n")
        bob.run("rise-send", "-q", "-", "alice", input=b"bob's reply\n")
        before = digests(stick)
        subprocess.run(["mount", "-o", "remount,ro", str(stick)], check=True)

        result = bob.run("rise-xfer", "--toss", str(stick), check=False)

        assert result.returncode == FAILURE
        lines = stderr_lines(result)
        unwritten = [line for line in lines if line.startswith("rise-xfer: not written: ")]
        assert len(unwritten) == 2, lines
        assert [line for line in unwritten if line.endswith("acks for alice stay owed")]
        assert [line for line in unwritten if line.endswith("bundles for alice stay queued")]
        assert all("Read-only file system" in line for line in unwritten)
        assert (bob.incoming / "alice" / "good.txt").read_bytes() == good
        assert digests(stick) == before
        assert len(queued(bob, alice)) == 1

        result = alice.run("rise-xfer", str(stick), check=False)  # alice: nothing to write? one
        assert result.returncode == FAILURE
        (line,) = [line for line in stderr_lines(result) if "not written" in line]
        assert line.endswith("bundles for bob stay queued")

        subprocess.run(["mount", "-o", "remount,rw", str(stick)], check=True)
        bob.run("rise-xfer", "-q", str(stick))  # the acks owed, and bob's reply
        alice.run("rise-xfer", "-q", "--toss", str(stick))
        assert len(queued(alice, bob)) == 1  # the one for the next trip
        assert alice.run("rise", "inbox", "--json").stdout.count(b'"bundle_id"') == 1


# --- folders where bundles belong: one line, and the rest goes on ---------------------------


def test_folders_named_like_bundles_stop_no_exchange(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    """A folder under the name of a bundle that alice is about to write, and one under the
    name of a bundle whose ack comes back (so alice removes that name): both are left
    alone with one line each, and every other bundle goes out and is confirmed. Each
    stopped the whole exchange ("Is a directory", exit 1), at every exchange."""
    alice, bob = pair
    first = alice.run("rise-send", "-q", "-", "bob", input=b"first").stdout.decode().strip()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", "--toss", str(stick))  # takes it, acks it, removes it
    to_bob = folder(stick, bob, alice)
    (to_bob / f"{first}.rsb" / "inside").mkdir(parents=True)  # where the ack's removal goes
    blocked = alice.run("rise-send", "-q", "-", "bob", input=b"blocked").stdout.decode().strip()
    (to_bob / f"{blocked}.rsb" / "inside").mkdir(parents=True)  # where this one is written
    others = [
        alice.run("rise-send", "-q", "-", "bob", input=f"other {n}".encode())
        .stdout.decode()
        .strip()
        for n in range(3)
    ]
    result = alice.run("rise-xfer", str(stick), check=False)
    assert result.returncode == REJECTED, result.stderr
    assert b"Traceback" not in result.stderr
    lines = rejected(result)
    assert len(lines) == 2, result.stderr
    assert all("a folder where a file belongs" in line for line in lines), lines
    assert any(f"{first}.rsb" in line for line in lines) and any(blocked in line for line in lines)
    assert b"ack from bob: 1 bundle(s) confirmed" in result.stderr
    on_stick = {path.stem for path in to_bob.glob("*.rsb") if path.is_file()}
    assert on_stick == set(others)
    assert (to_bob / f"{first}.rsb" / "inside").is_dir()  # left alone
    assert [path.stem for path in queued(alice, bob)] == sorted([blocked, *others])
    taken = bob.run("rise-xfer", "-q", "--toss", str(stick), check=False)
    assert taken.returncode == REJECTED  # the two folders, not read: one line each
    assert len(rejected(taken)) == 2, taken.stderr
    assert len(list((bob.home / "inbox").glob("*.msg"))) == 4  # first and the three others
