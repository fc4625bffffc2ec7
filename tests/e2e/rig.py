"""The end-to-end rig: a Debian sid root with apt, dnf5, dnf4 and pacman, cached in layers.

    python3 -m tests.e2e.rig build   # build what is missing, print the figures
    python3 -m tests.e2e.rig shell   # a shell in a fresh root with the plugins active
    python3 -m tests.e2e.rig clean   # remove the rig dir (image); --cache: the tarballs too

Layers, each a read-only "golden" subvolume of the rig's image, keyed on what makes it:
  base    (mmdebstrap sid + pyalpm; key: package list)  also kept as tar.zst in ASH_RIG_CACHE
  repos   (+ test packages and repos; key: base + tests/e2e/packages.py)
  project (+ this project installed by pip; key: repos + pyproject.toml, ashcore/, plugins/)
Each test gets a writable snapshot of `project`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e import packages
from tests.e2e.base import BaseContext, Say, base_key, build_base, digest
from tests.e2e.command import RigError, run
from tests.e2e.image import (
    Image,
    RigPaths,
    create_subvolume,
    delete_tree,
    is_read_only_subvolume,
    lock_file,
    set_read_only,
    snapshot,
    unlock_file,
)
from tests.e2e.mounts import (
    assert_nothing_mounted_below,
    enter_private_namespace,
    mount,
    unmount_below,
)
from tests.e2e.root import Root, chroot_env, mount_api, run_in

PROJECT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("pyproject.toml", "README.md", "ashcore", "plugins")


def say_stderr(message: str) -> None:
    print(f"[rig] {message}", file=sys.stderr, flush=True)


def repos_key(base: str) -> str:
    return digest(base, Path(packages.__file__).read_text())


def project_key(repos: str) -> str:
    parts = [repos]
    for name in PROJECT_FILES:
        top = PROJECT / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            parts += [str(path.relative_to(PROJECT)), content]
    return digest(*parts)


class Rig:
    """One rig dir attached for one session: its image mounted, its goldens built."""

    def __init__(self, paths: RigPaths, say: Say = say_stderr) -> None:
        self.paths = paths
        self.image = Image(paths, say)
        self.say = say
        self.golden = Path()
        self.device = ""
        self._count = 0
        self.timings: dict[str, float] = {}

    def open(self) -> None:
        self.image.attach()
        self.device = run(["findmnt", "-n", "-o", "SOURCE", str(self.paths.top)]).stdout
        self.device = self.device.strip().split("[", 1)[0]
        base = base_key()
        repos = repos_key(base)
        golden = self._layer("base", base, None, self._build_base)
        golden = self._layer("repos", repos, golden, self._build_repos)
        self.golden = self._layer("project", project_key(repos), golden, self._build_project)

    def close(self) -> None:
        self.image.detach()

    def new_root(self, name: str | None = None) -> Root:
        """A fresh writable snapshot of the project golden, mounted; close() it when done."""
        self._count += 1
        root = Root(
            self.golden,
            self.paths.top,
            self.device,
            self.paths.roots,
            name or f"{os.getpid()}-{self._count}",
        )
        root.open()
        return root

    # layers

    def _layer(
        self, name: str, key: str, parent: Path | None, build: Callable[[Path, str], None]
    ) -> Path:
        top = self.paths.top
        golden = top / "golden" / f"{name}-{key}"
        if is_read_only_subvolume(golden):
            return golden
        delete_tree(golden, top)
        started = time.monotonic()
        self.say(f"building layer {name} ({key})")
        work = top / "build" / f"{name}-{key}"
        delete_tree(work, top)
        if parent is None:
            create_subvolume(work)
        else:
            snapshot(parent, work)
        build(work, key)
        work.rename(golden)
        set_read_only(golden)
        for old in (top / "golden").glob(f"{name}-*"):
            if old != golden:
                delete_tree(old, top)
        self.timings[name] = time.monotonic() - started
        self.say(f"layer {name} ready in {self.timings[name]:.1f} s")
        return golden

    @contextmanager
    def _mounted(self, work: Path) -> Iterator[Path]:
        """The work subvolume mounted as a chroot of its own (pacman wants / a mount point)."""
        target = self.paths.roots / f"build-{work.name}"
        target.mkdir(parents=True, exist_ok=True)
        try:
            mount(self.device, target, f"subvol={work.relative_to(self.paths.top)}")
            mount_api(target)
            yield target
        finally:
            unmount_below(target)
            target.rmdir()

    def _build_base(self, work: Path, key: str) -> None:
        build_base(
            work, key, BaseContext(self.paths.cache, self.paths.top, self._mounted, self.say)
        )

    def _build_repos(self, work: Path, key: str) -> None:
        packages.write_repos(work)
        with self._mounted(work) as target:
            run_in(target, ["sh", "-c", packages.BUILD_SCRIPT])
            run_in(target, ["sh", "-c", packages.CONFIGURE_SCRIPT])

    def _build_project(self, work: Path, key: str) -> None:
        src = work / "usr/src/ashlayers"
        delete_tree(src, self.paths.top)
        src.mkdir(parents=True)
        for name in PROJECT_FILES:
            path = PROJECT / name
            if path.is_dir():
                shutil.copytree(
                    path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            elif path.exists():
                shutil.copy2(path, src / name)
        with self._mounted(work) as target:
            run_in(
                target,
                [
                    "python3",
                    "-m",
                    "pip",
                    "install",
                    "--break-system-packages",
                    "--no-deps",
                    "--no-build-isolation",
                    "--no-index",
                    "--no-cache-dir",
                    "/usr/src/ashlayers",
                ],
            )
        for leftover in ("build", "ashlayers.egg-info"):
            delete_tree(src / leftover, self.paths.top)


def unsupported() -> str | None:
    """Why this machine cannot run the rig at all (a skip), or None."""
    if os.geteuid() != 0:
        return "the e2e rig needs root (loop devices, btrfs, chroot)"
    if not Path("/dev/loop-control").exists():
        return "no loop device support (/dev/loop-control is missing)"
    if "btrfs" not in Path("/proc/filesystems").read_text():
        run(["modprobe", "btrfs"], check=False)
        if "btrfs" not in Path("/proc/filesystems").read_text():
            return "the kernel has no btrfs support"
    return None


def missing_tools() -> list[str]:
    return [
        t
        for t in ("mmdebstrap", "mkfs.btrfs", "zstd", "tar", "chroot", "findmnt")
        if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None
    ]


def open_rig(say: Say = say_stderr) -> Rig:
    """Check the host, attach the rig dir and build what is missing (RigError on failure)."""
    if reason := unsupported():
        raise RigError(reason)
    if missing := missing_tools():
        raise RigError(f"host tools missing: {' '.join(missing)} (run tests/host-deps.sh)")
    enter_private_namespace()
    rig = Rig(RigPaths.from_env(), say)
    try:
        rig.open()
    except BaseException:
        rig.close()
        raise
    return rig


def shell() -> int:
    rig = open_rig()
    try:
        root = rig.new_root(f"shell-{os.getpid()}")
        try:
            root.setup()
            say_stderr(f"root at {root.path} (subvolume {root.subvolume}); exit to remove it")
            say_stderr(
                "try: apt-get install ashtest-b | dnf5 install ashtest-v | "
                "pacman -S ashtest-a | ashctl --help"
            )
            env = chroot_env({"TERM": os.environ.get("TERM", "xterm"), "PS1": "ash-rig# "})
            return os.spawnve(
                os.P_WAIT,
                "/usr/sbin/chroot",
                ["chroot", str(root.path), "/bin/bash", "--norc", "-i"],
                env,
            )
        finally:
            root.close()
    finally:
        rig.close()


def clean(cache: bool) -> None:
    paths = RigPaths.from_env()
    enter_private_namespace()
    fd = lock_file(paths.dir / "lock", 60, f"rig dir {paths.dir}")
    try:
        unmount_below(paths.dir)
        paths.image.unlink(missing_ok=True)
        for path in (paths.top, paths.roots):
            assert_nothing_mounted_below(path)
            run(["rm", "-rf", "--one-file-system", "--", str(path)])
    finally:
        unlock_file(fd)
    if cache:
        for old in [*paths.cache.glob("base-*.tar.zst"), *paths.cache.glob("base-*.lock")]:
            old.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.e2e.rig",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build or reuse the rig; print the timings")
    sub.add_parser("shell", help="a shell in a fresh root of the rig, removed on exit")
    clean_parser = sub.add_parser("clean", help="remove the rig dir's image")
    clean_parser.add_argument("--cache", action="store_true", help="also the base tarballs")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            started = time.monotonic()
            rig = open_rig()
            rig.close()
            figures = ", ".join(f"{k} {v:.1f} s" for k, v in rig.timings.items()) or "all cached"
            say_stderr(f"rig ready in {time.monotonic() - started:.1f} s ({figures})")
        elif args.command == "shell":
            return shell()
        else:
            clean(args.cache)
    except RigError as exc:
        say_stderr(f"error: {exc}")
        return 1
    return 0


def system_python() -> None:
    """Re-run under the system interpreter when this one lacks python3-btrfsutil."""
    system = "/usr/bin/python3"
    if importlib.util.find_spec("btrfsutil") is None and sys.executable != system:
        os.execv(system, [system, "-m", "tests.e2e.rig", *sys.argv[1:]])


if __name__ == "__main__":
    system_python()
    sys.exit(main())
