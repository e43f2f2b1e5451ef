"""Nothing lost on a full disk: a one-line "no space" error (exit status 5), no partial
delivery, and everything goes through once space returns.

First in-process, failing each write step in turn (os.write, fsync, replace,
link, copy_file_range, sendfile as rise_dtn.store.atomic and toss see them)
until the operation gets through, so that no step is left uncovered; then
with the real commands on a small tmpfs that really fills up.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from rise_dtn.carriers.directory.xfer import XferReport
from rise_dtn.core.errors import NoSpaceError
from tests.conftest import run
from tests.e2e.test_crash import (
    DISK_STEPS,
    MIB,
    PLACED_SCENARIOS,
    SAME,
    Scenario,
    World,
    WriteSteps,
    assert_complete_bundles,
    digest,
    expect_what_was_queued,
    leftover_tmp,
    mounted_tmpfs,
    stepping,
    stick_for,
)

NO_SPACE_EXIT = 5


def no_space(_step: str) -> NoReturn:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def assert_nothing_partial(world: World) -> None:
    """Whatever is visible is whole: bundles parse, delivered files are the payloads sent."""
    assert leftover_tmp(world.alice, world.bob, world.stick) == []
    assert_complete_bundles([*world.tx_bundles(), *world.rx_bundles(), *world.stick.rglob("*.rsb")])
    incoming = world.bob / "incoming" / "alice"
    for path in incoming.iterdir() if incoming.is_dir() else []:
        assert digest(path.read_bytes()) == world.files.get(path.name), path.name
    for path in (world.bob / "inbox").iterdir():
        assert digest(path.read_bytes()) in world.messages, path.name


# -- every write step, in-process ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "place"), PLACED_SCENARIOS)
def test_no_space_at_every_write_step(tmp_path: Path, scenario: Scenario, place: str) -> None:
    failed_steps: set[str] = set()
    with stick_for(tmp_path, place) as stick_root:
        for at in range(1, 200):
            world = scenario.prepare(tmp_path / f"step{at}", stick_root / f"stick{at}")
            error: NoSpaceError | None = None
            with stepping(WriteSteps(at, no_space, DISK_STEPS)) as steps:
                try:
                    result = scenario.operation(world)
                except NoSpaceError as exc:
                    error = exc
            if steps.hit is None:  # it took fewer steps than `at`: each has failed once
                assert error is None
                break
            failed_steps.add(steps.hit)
            if error is not None:
                assert error.message.startswith("no space left"), error.message
                assert "\n" not in error.message
                assert error.exit_code == NO_SPACE_EXIT
            else:  # only a full stick is not an error of the exchange: the rest waits
                assert isinstance(result, XferReport), f"ENOSPC at {steps.hit} went unreported"
                assert result.medium_full, f"ENOSPC at {steps.hit} went unreported"
            assert_nothing_partial(world)
            if scenario.name.startswith("send"):
                # "No space" means not queued: the user's retry must not send it twice.
                assert world.tx_bundles() == [], f"queued, yet ENOSPC at {steps.hit} reported"
            expect_what_was_queued(world, scenario)
            # Space returns: everything goes through, once.
            world.complete()
            world.repair_and_check()
            world.assert_delivered_exactly_once()
            shutil.rmtree(world.base)
            shutil.rmtree(world.stick)
        else:
            raise AssertionError("the operation never got through")
    expected = scenario.steps if place == SAME else scenario.steps_across
    assert expected is not None
    assert expected <= failed_steps, f"never failed at {sorted(expected - failed_steps)}"


# -- a real full disk ----------------------------------------------------------------------


def fill(disk: Path, *, leave_bytes: int = 0) -> Path:
    """Take every free block of `disk` but `leave_bytes`; remove the returned file to undo."""
    filler = disk / "filler"
    block = b"\0" * (64 * 1024)
    with open(filler, "ab", buffering=0) as handle:
        for size in (len(block), 4096, 512, 1):
            try:
                while True:
                    handle.write(block[:size])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        handle.truncate(max(0, handle.tell() - leave_bytes))
    return filler


def assert_no_space(result: subprocess.CompletedProcess[bytes], command: str) -> None:
    """Exit status 5 and one clear line."""
    message = result.stderr.decode(errors="replace")
    assert result.returncode == NO_SPACE_EXIT, message
    assert message.startswith(f"{command}: no space left"), message
    assert message.count("\n") == 1, message
    assert "Traceback" not in message


def configure(home: Path, section: str, **settings: str) -> None:
    """Add `settings` (TOML values) to [section] of the node's config.toml, as a user would."""
    path = home / "config.toml"
    text = path.read_text()
    for key in settings:  # a setting made before is replaced (the file is ours alone)
        text = re.sub(rf"^{re.escape(key)} = .*\n", "", text, flags=re.MULTILINE)
    lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    header = f"[{section}]\n"
    text = text.replace(header, header + lines, 1) if header in text else text + header + lines
    path.write_text(text)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(5)


@pytest.mark.slow
def test_send_on_a_full_disk(tmp_path: Path, rng: random.Random) -> None:
    with mounted_tmpfs(tmp_path / "disk", size="8m") as disk:
        world = World.create(tmp_path, alice=disk / "alice")
        report, message = rng.randbytes(3 * MIB + 5), rng.randbytes(MIB + 7)
        (tmp_path / "report.pdf").write_bytes(report)
        for leave_bytes in (0, 512 * 1024):  # full; room for small files, not for the bundle
            filler = fill(disk, leave_bytes=leave_bytes)
            result = run(
                "rise-send", str(tmp_path / "report.pdf"), "bob", home=world.alice, check=False
            )
            assert_no_space(result, "rise-send")
            result = run("rise-send", "-", "bob", home=world.alice, input=message, check=False)
            assert_no_space(result, "rise-send")
            assert world.tx_bundles() == []  # nothing queued: a retry sends it once
            assert leftover_tmp(disk) == []
            filler.unlink()
        run("rise-send", "-q", str(tmp_path / "report.pdf"), "bob", home=world.alice)
        run("rise-send", "-q", "-", "bob", home=world.alice, input=message)
        world.expect(report, name="report.pdf")
        world.expect(message)
        run("rise-check", home=world.alice)
        world.complete()
        world.assert_delivered_exactly_once()
        run("rise-check", home=world.alice)


class FillAfterRename:
    """`os` for rise_dtn.store.atomic: the disk fills up the moment a file is renamed."""

    def __init__(self, disk: Path) -> None:
        self.disk = disk

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)
        fill(self.disk)


@pytest.mark.slow
def test_a_full_index_after_the_rename_leaves_nothing_queued(tmp_path: Path) -> None:
    """The bundle is in tx/ already when the index finds the disk full: "no space" must
    still mean "not queued", or the user's retry would deliver it twice."""
    with mounted_tmpfs(tmp_path / "disk", size="8m") as disk:
        world = World.create(tmp_path, alice=disk / "alice")
        data = random.Random(7).randbytes(MIB + 3)
        with (
            stepping(FillAfterRename(disk)),  # type: ignore[arg-type]
            pytest.raises(NoSpaceError, match=r"^no space left for the index"),
        ):
            world.send(data, name="late.bin")
        assert world.tx_bundles() == []
        assert leftover_tmp(disk) == []
        (disk / "filler").unlink()
        world.send(data, name="late.bin")
        world.expect(data, name="late.bin")
        world.complete()
        world.assert_delivered_exactly_once()
        run("rise-check", home=world.alice)


@pytest.mark.slow
def test_toss_on_a_full_disk(tmp_path: Path, rng: random.Random) -> None:
    with mounted_tmpfs(tmp_path / "disk", size="16m") as disk:
        world = World.create(tmp_path, bob=disk / "bob")
        configure(world.bob, "spool", min_free="0")  # the disk itself says no, not the reserve
        for name, size in (("photo.jpg", 3 * MIB + 1), (None, 200 * 1024), ("notes.txt", 900)):
            data = rng.randbytes(size)
            world.send(data, name=name)
            world.expect(data, name=name)
        world.carry()
        assert len(world.rx_bundles()) == 3
        for leave_bytes in (0, 512 * 1024):  # full; room for the index, not for the photo
            filler = fill(disk, leave_bytes=leave_bytes)
            assert_no_space(run("rise-toss", "-q", home=world.bob, check=False), "rise-toss")
            assert_nothing_partial(world)
            filler.unlink()
        run("rise-toss", "-q", home=world.bob)
        world.assert_delivered_exactly_once()
        assert world.rx_bundles() == []
        run("rise-check", home=world.bob)
        world.complete()  # the acks go back; Alice's spool drains
        assert world.tx_bundles() == []


def assert_not_taken(result: subprocess.CompletedProcess[bytes], reason: str) -> None:
    """Exit status 5, a `not taken:` line naming `reason` per bundle left, then the summary."""
    lines = result.stderr.decode(errors="replace").splitlines()
    assert result.returncode == NO_SPACE_EXIT, lines
    *left, summary = lines
    assert left, lines
    assert all(line.startswith("rise-xfer: not taken: ") and reason in line for line in left)
    assert summary.startswith(f"rise-xfer: no room in the spool for {len(left)} bundle"), lines
    assert "Traceback" not in result.stderr.decode(errors="replace")


def stick_bundles(world: World) -> list[Path]:
    return sorted(world.stick.rglob("*.rsb"))


@pytest.mark.slow
def test_a_spool_short_of_room_leaves_bundles_on_the_stick(
    tmp_path: Path, rng: random.Random
) -> None:
    """min_free: what would eat into the reserve stays on the stick, unacked, till there is room."""
    with mounted_tmpfs(tmp_path / "disk", size="16m") as disk:
        world = World.create(tmp_path, bob=disk / "bob")
        configure(world.bob, "spool", min_free='"10M"')
        for name, size in (("video.mkv", 6 * MIB), ("notes.txt", 900)):
            data = rng.randbytes(size)
            world.send(data, name=name)
            world.expect(data, name=name)
        run("rise-xfer", "-q", str(world.stick), home=world.alice)
        result = run("rise-xfer", "-q", str(world.stick), home=world.bob, check=False)
        assert_not_taken(result, "no room: ")
        assert len(world.rx_bundles()) == 1  # the note fits; the video would leave < 10M
        assert len(stick_bundles(world)) == 2  # nothing removed before it is acked
        run("rise-toss", "-q", home=world.bob)
        configure(world.bob, "spool", min_free='"1M"')
        world.complete()
        world.assert_delivered_exactly_once()
        assert stick_bundles(world) == []
        for home in (world.alice, world.bob):
            run("rise-check", home=home)


def test_a_receive_quota_keeps_a_neighbour_to_its_share(tmp_path: Path, rng: random.Random) -> None:
    """receive_max_bytes counts what waits for rise-toss: a toss makes room for the rest."""
    world = World.create(tmp_path)
    configure(world.bob, "peers.alice", receive_max_bytes='"1M"')
    for number in range(3):
        data = rng.randbytes(400 * 1024)
        world.send(data, name=f"scan{number}.png")
        world.expect(data, name=f"scan{number}.png")
    run("rise-xfer", "-q", str(world.stick), home=world.alice)
    assert_not_taken(
        run("rise-xfer", "-q", str(world.stick), home=world.bob, check=False),
        "over the receive quota",
    )
    assert len(world.rx_bundles()) == 2
    run("rise-xfer", "-q", "--toss", str(world.stick), home=world.bob, check=False)
    run("rise-xfer", "-q", "--toss", str(world.stick), home=world.bob)  # room again: taken
    world.complete()
    world.assert_delivered_exactly_once()
    for home in (world.alice, world.bob):
        run("rise-check", home=home)


@pytest.mark.slow
def test_xfer_to_a_full_stick(tmp_path: Path, rng: random.Random) -> None:
    """A stick that Alice fills to the last block: the exchanges still drain it, in rounds."""
    with mounted_tmpfs(tmp_path / "usb", size="128k") as stick:
        world = World.create(tmp_path, stick=stick)
        for number in range(40):  # one 4 KiB page each: the 33rd does not fit
            data = rng.randbytes(100 + number)
            world.send(data)
            world.expect(data)
        data = rng.randbytes(60 * 1024)
        world.send(data, name="scan.png")
        world.expect(data, name="scan.png")
        statuses = []
        for _round in range(6):
            for home, args in ((world.alice, ()), (world.bob, ("--toss",))):
                result = run("rise-xfer", "-q", *args, str(stick), home=home, check=False)
                if result.returncode:
                    assert_no_space(result, "rise-xfer")
                statuses.append(result.returncode)
                assert leftover_tmp(stick) == []
                assert_complete_bundles(list(stick.rglob("*.rsb")))
            if not world.tx_bundles():
                break
        assert NO_SPACE_EXIT in statuses  # the stick did fill up
        run("rise-xfer", "-q", str(stick), home=world.alice)  # the last acks
        assert world.tx_bundles() == []
        assert [path for path in stick.rglob("*") if path.is_file()] == []
        world.assert_delivered_exactly_once()
        for home in (world.alice, world.bob):
            run("rise-check", home=home)


def test_a_full_stick_still_takes_the_smaller_bundles_behind_a_large_one(
    tmp_path: Path, rng: random.Random
) -> None:
    """The oldest bundle does not fit the room left on the stick; the three after it do:
    they go, it stays queued (one line for it, and a summary), and nothing torn is left."""
    with mounted_tmpfs(tmp_path / "usb", size="512k") as stick:
        world = World.create(tmp_path, stick=stick)
        scan = rng.randbytes(200 * 1024)  # fits the stick, not the room left on it
        world.send(scan, name="scan.png")
        world.expect(scan, name="scan.png")
        (large,) = world.tx_bundles()
        for number in range(3):
            data = rng.randbytes(100 + number)
            world.send(data)
            world.expect(data)
        filler = fill(stick, leave_bytes=64 * 1024)
        result = run("rise-xfer", str(stick), home=world.alice, check=False)
        lines = result.stderr.decode(errors="replace").splitlines()
        on_stick = stick_bundles(world)
        assert sorted(path.name for path in on_stick) == sorted(
            path.name for path in world.tx_bundles() if path != large
        )
        assert result.returncode == NO_SPACE_EXIT, lines
        assert "Traceback" not in result.stderr.decode(errors="replace")
        left = [line for line in lines if line.startswith("left queued: ")]
        assert len(left) == 1 and left[0].startswith(f"left queued: {large.stem} for bob"), lines
        assert lines[-1].startswith("rise-xfer: no space left on the medium for 1 bundle(s)")
        assert leftover_tmp(stick) == []
        assert_complete_bundles(on_stick)
        quiet = run("rise-xfer", "-q", str(stick), home=world.alice, check=False)
        assert_no_space(quiet, "rise-xfer")  # -q: the summary alone
        filler.unlink()
        world.complete()
        world.assert_delivered_exactly_once()
        for home in (world.alice, world.bob):
            run("rise-check", home=home)
