"""Two roots on one machine: each store's stages and temporary mounts are its own
(ashcore/stage.py), and `doctor` finds and clears what a killed run of its store left,
never another store's.

Both roots are made the same way, so their counters agree (layer ids, deployment names):
what two roots cloned from one base have."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.btrfs.conftest import (
    Image,
    destroy_image,
    host_folder,
    left_on_host,
    make_image,
    mounted_below,
    sh,
)

pytestmark = pytest.mark.btrfs

STOP = "tmp/stop"  # in a stage: the waiting command ends when the test makes this file
COMMAND = ("/usr/bin/sh", "-c", f"while [ ! -e /{STOP} ]; do /usr/bin/sleep 0.2; done")


def with_programs(root: Path, *programs: str) -> None:
    """Copy host programs and the libraries they load into the root, at the same paths, so
    that they run chrooted in its stages."""
    for program in programs:
        real = shutil.which(program)
        assert real is not None, program
        loaded = re.findall(r"(/\S+) \(0x", sh("ldd", real))
        for path in [os.path.realpath(real), *loaded]:
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def prepare(img: Image) -> None:
    img.ashctl("setup", check=True)
    r = img.root
    for folder in ("proc", "sys", "dev", "tmp", "run"):
        (r / folder).mkdir(exist_ok=True)
    with_programs(r, "dash", "sleep")
    (r / "usr/bin/dash").rename(r / "usr/bin/sh")
    for name in ("a", "b", "c"):
        img.ashctl("run", "--name", name, "--", "touch", str(r / "etc" / name), check=True)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Image, Image]]:
    made: list[Image] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            made.append(make_image(tmp_path / name))
            prepare(made[-1])
        yield made[0], made[1]
    finally:
        for img in made:
            for pid in running_in(img.dir, below=True):  # what a failed test left running
                os.kill(pid, signal.SIGKILL)
            for folder in host_folder_or_none(img):  # what a failed test left: stop, unmount
                for stage in stages(img):
                    for pid in running_in(stage):
                        os.kill(pid, signal.SIGKILL)
                for target in sorted(mounted_below(folder), key=len, reverse=True):
                    subprocess.run(["umount", "-l", target], check=False)
                assert not mounted_below(folder), "mounts left behind"
                # Never a recursive delete here: a stage holds a bind of the host's /dev.
                for entry in folder.glob("*") if folder.exists() else []:
                    if entry.is_dir():
                        entry.rmdir()
                    else:
                        entry.unlink()
                if folder.exists():
                    folder.rmdir()
            destroy_image(img)


def host_folder_or_none(img: Image) -> list[Path]:
    try:
        return [host_folder(img.root / ".ash")]
    except Exception:  # the image is gone already
        return []


def stages(img: Image) -> list[Path]:
    """The stages mounted in the image's store's host folder."""
    found = []
    for folder in host_folder_or_none(img):
        mounted = set(mounted_below(folder))
        found += [p for p in folder.glob("stage-*") if str(p) in mounted]
    return found


class Tried:
    """`ashctl try` of a command that waits for its stage's STOP file, running. Its output
    goes to a file: a pipe would stay open in the command, which outlives a killed ashctl."""

    def __init__(self, img: Image) -> None:
        before = set(stages(img))
        self.output = img.dir / f"try-{time.monotonic_ns()}.out"
        with open(self.output, "w") as out:
            argv = [sys.executable, "-m", "ashcore.cli", "--root", str(img.root), "try"]
            self.proc = subprocess.Popen(
                [*argv, "--", *COMMAND],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [s for s in stages(img) if s not in before and (s / "tmp").is_mount()]
            if new and running_in(new[0]):
                self.stage = new[0]
                return
            assert self.proc.poll() is None, self.output.read_text()
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError(f"no stage of {img.root} was mounted: {self.output.read_text()}")

    def running(self) -> bool:
        return (
            self.proc.poll() is None
            and bool(running_in(self.stage))
            and (self.stage / "tmp").is_mount()
        )

    def finish(self) -> tuple[int, str]:
        (self.stage / STOP).touch()
        return self.proc.wait(timeout=60), self.output.read_text()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def running_in(root: Path, *, below: bool = False) -> list[int]:
    """The processes chrooted in `root` (or, `below`, anywhere under it)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit():
                continue
            seen = os.readlink(f"/proc/{entry}/root")
            if seen == str(root) or (below and seen.startswith(f"{root}/")):
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_two_roots_from_one_base_have_stages_of_their_own(two: tuple[Image, Image]) -> None:
    a, b = two
    tried_b = Tried(b)
    tried_a = Tried(a)
    # The same counters (the same deployment name), yet each store's own place.
    assert tried_a.stage.name == tried_b.stage.name, (tried_a.stage, tried_b.stage)
    assert tried_a.stage != tried_b.stage
    assert tried_a.stage.parent == host_folder(a.root / ".ash"), tried_a.stage
    assert tried_b.stage.parent == host_folder(b.root / ".ash"), tried_b.stage
    code, said = tried_a.finish()
    assert code == 0 and "nothing changed" in said, said
    # a's try, done and cleaned up, left b's running: its command, its mounts.
    assert tried_b.running()
    # So does a replay of a (its stage, its kills, its unmounts).
    removed = a.ashctl("remove", "b")
    assert removed.returncode == 0 and "removed layer" in removed.stdout, removed
    assert tried_b.running()
    assert not left_on_host(a.root / ".ash")
    code, said = tried_b.finish()
    assert code == 0 and "nothing changed" in said, said
    for img in (a, b):
        assert not left_on_host(img.root / ".ash")
        assert img.ashctl("doctor").returncode == 0


def test_doctor_clears_what_a_killed_try_left_and_only_that(two: tuple[Image, Image]) -> None:
    a, b = two
    tried_b = Tried(b)
    tried_a = Tried(a)
    stage_a = tried_a.stage
    mounts = mounted_below(stage_a)
    assert len(mounts) >= 6, mounts  # the stage, the store, proc, sys, tmp, run, dev...
    tried_a.kill()
    assert running_in(stage_a)  # the command it ran goes on, in its stage

    found = a.ashctl("doctor")
    assert found.returncode == 1, found
    assert "a killed try left" in found.stdout and str(stage_a) in found.stdout, found.stdout
    assert mounted_below(stage_a) == mounts  # plain doctor changes nothing

    mended = a.ashctl("doctor", "--repair")
    assert mended.returncode == 0, mended
    assert not mounted_below(host_folder(a.root / ".ash")) and not running_in(stage_a)
    assert not left_on_host(a.root / ".ash")
    assert not list((a.root / ".ash/deployments").iterdir())  # the try, cut short, is gone
    assert a.ashctl("doctor").returncode == 0

    # b's try, running in a stage of the same name, was not touched.
    assert tried_b.running()
    assert b.ashctl("doctor").returncode == 0  # a running try is no leftover
    code, said = tried_b.finish()
    assert code == 0 and "nothing changed" in said, said
    assert not left_on_host(b.root / ".ash")


def start_apply(img: Image) -> tuple[subprocess.Popen[bytes], list[str]]:
    """`ashctl apply` of a recipe whose command waits for the root's STOP file, running;
    returned with the mounts it made in the root, once its command runs."""
    # A recipe runs only a package manager's command line: a stand-in apt-get that waits.
    fake = img.root / "usr/bin/apt-get"
    # (apply fetches the lists first: `update` returns at once.)
    fake.write_text(
        f'#!/usr/bin/sh\n[ "$1" = update ] && exit 0\nexec {" ".join(repr(w) for w in COMMAND)}\n'
    )
    fake.chmod(0o755)
    recipe = img.dir / "recipe.toml"
    recipe.write_text(
        'version = 2\n[[operation]]\nname = "wait"\ncommand = ["apt-get", "install", "-y", "x"]\n'
    )
    before = set(mounted_below(img.root))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ashcore.cli", "--root", str(img.root), "apply", str(recipe)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if running_in(img.root):
            return proc, sorted(set(mounted_below(img.root)) - before)
        assert proc.poll() is None, proc.returncode
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the recipe's command did not start")


def test_doctor_unmounts_what_a_killed_apply_left_in_its_root(two: tuple[Image, Image]) -> None:
    a, b = two
    applied_b, made_b = start_apply(b)
    applied_a, made_a = start_apply(a)
    assert str(a.root / "run") in made_a and str(a.root / "dev") in made_a, made_a
    applied_a.send_signal(signal.SIGKILL)
    applied_a.wait()
    for pid in running_in(a.root):  # the recipe's command, still running in the root
        os.kill(pid, signal.SIGKILL)

    found = a.ashctl("doctor")
    assert found.returncode == 1 and "a killed apply left" in found.stdout, found
    assert str(a.root / "run") in found.stdout, found.stdout
    mended = a.ashctl("doctor", "--repair")
    assert mended.returncode == 0, mended
    assert not set(made_a) & set(mounted_below(a.root)), mounted_below(a.root)
    assert not left_on_host(a.root / ".ash")
    assert a.ashctl("doctor").returncode == 0

    # b's apply, running beside it, still has its mounts, and ends as it should.
    assert set(made_b) <= set(mounted_below(b.root)) and applied_b.poll() is None
    assert b.ashctl("doctor").returncode == 0
    (b.root / STOP).touch()
    assert applied_b.wait(timeout=60) == 0
    assert not set(made_b) & set(mounted_below(b.root))
    assert not left_on_host(b.root / ".ash")
