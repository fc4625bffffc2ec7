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
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e import packages
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
from tests.e2e.root import Root, chroot_argv, chroot_env, mount_api

PROJECT = Path(__file__).resolve().parents[2]
SUITE = "sid"
PYALPM = "pyalpm==0.10.12"
PACKAGES = (
    *("python3-apt", "apt-utils", "dpkg-dev"),
    *("dnf5", "python3-libdnf5", "python3-libdnf5-python-plugins-loader", "dnf", "python3-dnf"),
    *("rpm", "createrepo-c"),
    *("pacman-package-manager", "makepkg", "libarchive-tools", "zstd"),
    *("python3-btrfsutil", "btrfs-progs", "python3-pip", "python3-setuptools"),
    "snapper",  # for the benchmarks: Debian's snapper apt hook and pre/post pairs
    # to build pyalpm
    *("libalpm-dev", "gcc", "libc6-dev", "pkgconf", "python3-pkgconfig", "python3-dev"),
    *("libssl-dev", "libarchive-dev", "libcurl4-openssl-dev", "libgpgme-dev"),
)
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    '--aptopt=Acquire::Check-Valid-Until "false"',
    '--aptopt=Acquire::Retries "5"',
    '--aptopt=Acquire::http::Timeout "30"',
    "--dpkgopt=force-unsafe-io",
)
PROJECT_FILES = ("pyproject.toml", "README.md", "ashcore", "plugins")
ATTEMPTS = 3

Say = Callable[[str], None]


def say_stderr(message: str) -> None:
    print(f"[rig] {message}", file=sys.stderr, flush=True)


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def base_key() -> str:
    recipe = {"suite": SUITE, "packages": sorted(PACKAGES), "options": MMDEBSTRAP_OPTIONS,
              "pyalpm": PYALPM, "arch": platform.machine(), "recipe": 1}
    return digest(json.dumps(recipe, sort_keys=True))


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
            parts += [str(path.relative_to(PROJECT)), path.read_bytes().hex()]
    return digest(*parts)


def mirror() -> str:
    """The Debian mirror the host's own apt sources name (ASH_RIG_MIRROR overrides it)."""
    if url := os.environ.get("ASH_RIG_MIRROR"):
        return url
    sources = Path("/etc/apt/sources.list.d")
    texts = [p.read_text() for p in sorted(sources.glob("*.sources"))]
    for text in texts:
        for line in text.splitlines():
            for word in line.removeprefix("URIs:").split() if line.startswith("URIs:") else ():
                if "security" not in word:
                    return word
    for path in [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]:
        for line in path.read_text().splitlines() if path.exists() else ():
            words = line.split()
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if not w.startswith("["))
    return "http://deb.debian.org/debian"


def in_root(path: Path, argv: list[str] | str, *, env: dict[str, str] | None = None,
            timeout: float = 900) -> None:
    """Run a build step chrooted into path; a failure is a RigError with the output."""
    run(chroot_argv(path, argv), env=chroot_env(env), timeout=timeout)


def reason(exc: Exception) -> str:
    """The line of a failure's output most likely to say why."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "rror" in line or line.startswith(("E:", "W:")):
            return line
    return lines[-1] if lines else repr(exc)


def retry(what: str, say: Say, step: Callable[[], None], undo: Callable[[], None]) -> None:
    """A step that talks to the mirror or PyPI: retried, with the last reason on failure."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            step()
            return
        except RigError as exc:
            undo()
            if attempt == ATTEMPTS:
                raise RigError(
                    f"{what} failed {ATTEMPTS} times ({reason(exc)}); last failure:\n{exc}"
                ) from exc
            say(f"{what} failed (attempt {attempt}/{ATTEMPTS}), retrying: {reason(exc)}")
            time.sleep(10 * attempt)


class Rig:
    """One rig dir attached for one session: its image mounted, its goldens built."""

    def __init__(self, paths: RigPaths, say: Say = say_stderr) -> None:
        self.paths = paths
        self.image = Image(paths)
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
        root = Root(self.golden, self.paths.top, self.device, self.paths.roots,
                    name or f"{os.getpid()}-{self._count}")
        root.open()
        return root

    # layers

    def _layer(self, name: str, key: str, parent: Path | None,
               build: Callable[[Path, str], None]) -> Path:
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
        cache = self.paths.cache
        tarball = cache / f"base-{key}.tar.zst"
        lock = lock_file(cache / f"base-{key}.lock", 1800, f"the cache {tarball}")
        try:
            if tarball.exists():
                self.say(f"restoring {tarball}")
                if self._restore(tarball, work):
                    return
                self.say(f"{tarball} is damaged, building anew")
                tarball.unlink()
            self._bootstrap(work)
            self._save(work, tarball)
            for old in cache.glob("base-*.tar.zst"):
                if old != tarball:
                    old.unlink()
        finally:
            unlock_file(lock)

    def _restore(self, tarball: Path, work: Path) -> bool:
        proc = run(["tar", "-C", str(work), "--numeric-owner", "--xattrs", "--xattrs-include=*",
                    "--acls", "-I", "zstd -T0", "-xpf", str(tarball)], check=False)
        if proc.returncode == 0:
            return True
        unmount_below(work)
        for child in work.iterdir():
            delete_tree(child, self.paths.top)
        return False

    def _save(self, work: Path, tarball: Path) -> None:
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_name(f".{tarball.name}.{os.getpid()}")
        try:
            run(["tar", "-C", str(work), "--numeric-owner", "--xattrs", "--xattrs-include=*",
                 "--acls", "-I", "zstd -T0 -3", "-cf", str(partial), "."])
            with open(partial, "rb") as f:
                os.fsync(f.fileno())
            partial.rename(tarball)
        finally:
            partial.unlink(missing_ok=True)

    def _bootstrap(self, work: Path) -> None:
        url = mirror()
        self.say(f"mmdebstrap {SUITE} from {url} ({len(PACKAGES)} packages and their deps)")

        def bootstrap() -> None:
            run(["mmdebstrap", *MMDEBSTRAP_OPTIONS, f"--include={','.join(PACKAGES)}",
                 SUITE, str(work), url], timeout=1200)

        def empty() -> None:
            unmount_below(work)
            for child in work.iterdir():
                delete_tree(child, self.paths.top)

        retry(f"mmdebstrap of Debian {SUITE} from {url}", self.say, bootstrap, empty)
        mtab = work / "etc/mtab"
        mtab.unlink(missing_ok=True)
        mtab.symlink_to("../proc/self/mounts")
        self.say(f"pip install {PYALPM} (built in the root)")
        resolv = work / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", work / "root/host-ca.crt")
        env = {"SSL_CERT_FILE": "/root/host-ca.crt", "PIP_CERT": "/root/host-ca.crt"}
        try:
            with self._mounted(work) as target:
                retry(f"pip install {PYALPM} from PyPI", self.say, lambda: in_root(
                    target,
                    ["python3", "-m", "pip", "install", "--break-system-packages",
                     "--no-cache-dir", "--no-build-isolation", "--retries", "5",
                     "--timeout", "30", PYALPM],
                    env=env), lambda: None)
                in_root(target, ["python3", "-c", "import pyalpm"])
        finally:
            resolv.unlink(missing_ok=True)
            (work / "root/host-ca.crt").unlink(missing_ok=True)

    def _build_repos(self, work: Path, key: str) -> None:
        packages.write_repos(work)
        with self._mounted(work) as target:
            in_root(target, ["sh", "-c", packages.BUILD_SCRIPT])
            in_root(target, ["sh", "-c", packages.CONFIGURE_SCRIPT])

    def _build_project(self, work: Path, key: str) -> None:
        src = work / "usr/src/ashlayers"
        delete_tree(src, self.paths.top)
        src.mkdir(parents=True)
        for name in PROJECT_FILES:
            path = PROJECT / name
            if path.is_dir():
                shutil.copytree(path, src / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.exists():
                shutil.copy2(path, src / name)
        with self._mounted(work) as target:
            in_root(target, ["python3", "-m", "pip", "install", "--break-system-packages",
                             "--no-deps", "--no-build-isolation", "--no-index",
                             "--no-cache-dir", "/usr/src/ashlayers"])
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
    return [t for t in ("mmdebstrap", "mkfs.btrfs", "zstd", "tar", "chroot", "findmnt")
            if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]


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
            say_stderr("try: apt-get install ashtest-b | dnf5 install ashtest-v | "
                       "pacman -S ashtest-a | ashctl --help")
            env = chroot_env({"TERM": os.environ.get("TERM", "xterm"), "PS1": "ash-rig# "})
            return os.spawnve(os.P_WAIT, "/usr/sbin/chroot",
                              ["chroot", str(root.path), "/bin/bash", "--norc", "-i"], env)
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
    parser = argparse.ArgumentParser(prog="python3 -m tests.e2e.rig", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
