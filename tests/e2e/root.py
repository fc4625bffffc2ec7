"""A root of the rig, mounted as a chroot: what each test (and the try-it shell) gets."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.e2e.command import RigError, describe
from tests.e2e.command import run as run_host
from tests.e2e.image import delete_tree, snapshot
from tests.e2e.mounts import mount, unmount_below

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def chroot_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The clean environment of every command run in a root."""
    return {
        "PATH": CHROOT_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        **(extra or {}),
    }


def chroot_argv(path: Path, argv: Sequence[str] | str) -> list[str]:
    inner = ["/bin/sh", "-c", argv] if isinstance(argv, str) else list(argv)
    return ["/usr/sbin/chroot", str(path), *inner]


def run_in(
    path: Path, argv: list[str] | str, *, env: dict[str, str] | None = None, timeout: float = 900
) -> None:
    """Run a build step chrooted into path; a failure is a RigError with the output."""
    run_host(chroot_argv(path, argv), env=chroot_env(env), timeout=timeout)


def mount_api(path: Path) -> None:
    """proc, sys, a private bind of /dev, a devpts of its own, a tmpfs /tmp; /etc/mtab."""
    mount("proc", path / "proc", "nosuid,nodev,noexec", fstype="proc")
    mount("sysfs", path / "sys", "nosuid,nodev,noexec,ro", fstype="sysfs")
    mount("/dev", path / "dev", "bind")
    run_host(["mount", "--make-private", str(path / "dev")])
    mount("devpts", path / "dev/pts", "newinstance", "ptmxmode=0666", "mode=620", fstype="devpts")
    mount(str(path / "dev/pts/ptmx"), path / "dev/ptmx", "bind")
    mount("tmpfs", path / "tmp", "mode=1777", "nosuid", "nodev", fstype="tmpfs")
    mtab = path / "etc/mtab"
    if not mtab.is_symlink() or os.readlink(mtab) != "../proc/self/mounts":
        raise RigError(f"{mtab} is not a link to ../proc/self/mounts (the golden is broken)")


def kill_processes_in(path: Path) -> None:
    """SIGKILL every process whose root or working directory is path or below (daemons a
    package script left, commands that timed out), so that the root can be unmounted."""
    for _ in range(10):
        found = False
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                inside = any(
                    Path(os.readlink(proc / link)) == path
                    or path in Path(os.readlink(proc / link)).parents
                    for link in ("root", "cwd")
                )
                if inside:
                    os.kill(int(proc.name), signal.SIGKILL)
                    found = True
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        if not found:
            return
        time.sleep(0.1)


class Root:
    """A writable snapshot of the golden, mounted at `path` with the API file systems.

    `subvolume` is its path inside the file system (e.g. /tests/3/@root) and `top` the host
    path where the image's top level is mounted; its folder `top/tests/<n>` holds it and all
    that the test adds (the sibling store @ash, subroots) and is deleted with it.
    """

    def __init__(self, golden: Path, top: Path, device: str, mount_dir: Path, name: str) -> None:
        self.golden = golden
        self.top = top
        self.device = device
        self.folder = top / "tests" / name
        self.subvolume = f"/tests/{name}/@root"
        self.path = mount_dir / name
        self._subroots: list[str] = []

    def open(self) -> None:
        """Snapshot the golden and mount it; undo everything when any step fails."""
        try:
            snapshot(self.golden, self.folder / "@root")
            self.path.mkdir(parents=True, exist_ok=True)
            mount(self.device, self.path, f"subvol={self.subvolume}")
            mount_api(self.path)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Unmount everything below the root (the store too), then delete its folder.

        When something cannot be unmounted nothing is deleted (RigError); the next attach of
        the image clears the leftovers.
        """
        kill_processes_in(self.path)
        unmount_below(self.path)
        delete_tree(self.folder, self.top)
        if self.path.exists():
            self.path.rmdir()

    def run(
        self,
        argv: list[str] | str,
        *,
        env: dict[str, str] | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv chrooted as root with a clean environment (a str runs via `sh -c`).

        stdin is /dev/null unless input is given: a command that asks never hangs a test.
        """
        full = chroot_argv(self.path, argv)
        try:
            proc = subprocess.run(
                full,
                env=chroot_env(env),
                input=input,
                stdin=subprocess.DEVNULL if input is None else None,
                timeout=timeout,
                text=True,
                capture_output=True,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"$ {_show(argv)}\ntimed out after {timeout} s") from exc
        if check and proc.returncode != 0:
            raise AssertionError(f"in the root {self.path}:\n{describe(_as_list(argv), proc)}")
        return proc

    def ashctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["ashctl", *args], check=check)

    def ashctl_json(self, *args: str) -> Any:
        proc = self.ashctl("--json", *args)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"ashctl --json {shlex.join(args)}: not JSON: {exc}\n{proc.stdout}"
            ) from exc

    def setup(self) -> None:
        """`ashctl setup` inside the root; only a warning while the command does not exist."""
        proc = self.run(["ashctl", "setup"], check=False)
        missing = proc.returncode == 127 or "No module named 'ashcore" in proc.stderr
        if missing:
            warnings.warn(
                f"ashctl is not available in the rig yet: {proc.stderr.strip()[-300:]}",
                stacklevel=2,
            )
        elif proc.returncode != 0:
            raise AssertionError(f"`ashctl setup` failed:\n{describe(['ashctl', 'setup'], proc)}")

    def make_subroot(self, name: str) -> Path:
        """A fresh snapshot of the golden at top/tests/<n>/<name>/@root, mounted at /<name>.

        Returns the path as seen inside the chroot; it is removed with the root.
        """
        if not _NAME.match(name) or name in self._subroots or name.startswith("@"):
            raise ValueError(f"bad or used subroot name: {name!r}")
        snapshot(self.golden, self.folder / name / "@root")
        target = self.path / name
        target.mkdir(exist_ok=True)
        mount(self.device, target, f"subvol=/tests/{self.folder.name}/{name}/@root")
        self._subroots.append(name)
        return Path("/") / name


def _as_list(argv: list[str] | str) -> list[str]:
    return ["/bin/sh", "-c", argv] if isinstance(argv, str) else argv


def _show(argv: list[str] | str) -> str:
    return argv if isinstance(argv, str) else shlex.join(argv)
