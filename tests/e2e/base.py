"""The base layer: Debian sid with apt, dnf5, dnf4 and pacman (mmdebstrap), pyalpm built in it.

Its key is its recipe (suite, package list, options); the finished base is also kept as a
tar.zst in the cache shared by every rig dir (ASH_RIG_CACHE), made under an flock, so that
a new image, or a second rig dir, restores it in seconds instead of bootstrapping again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.command import RigError, run
from tests.e2e.image import delete_tree, lock_file, unlock_file
from tests.e2e.mounts import unmount_below
from tests.e2e.root import run_in

SUITE = "sid"
PYALPM = "pyalpm==0.10.12"
PACKAGES = (
    *("python3-apt", "apt-utils", "dpkg-dev", "aptitude"),
    *("dnf5", "python3-libdnf5", "python3-libdnf5-python-plugins-loader", "dnf", "python3-dnf"),
    *("rpm", "createrepo-c", "zypper"),
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
ATTEMPTS = 3

Say = Callable[[str], None]


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def base_key() -> str:
    recipe = {
        "suite": SUITE,
        "packages": sorted(PACKAGES),
        "options": MMDEBSTRAP_OPTIONS,
        "pyalpm": PYALPM,
        "arch": platform.machine(),
        "recipe": 1,
    }
    return digest(json.dumps(recipe, sort_keys=True))


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


@dataclass(frozen=True)
class BaseContext:
    cache: Path  # the shared tarball cache
    top: Path  # the image's top level (what may be deleted)
    mounted: Callable[[Path], AbstractContextManager[Path]]  # a work subvolume as a chroot
    say: Say


def build_base(work: Path, key: str, ctx: BaseContext) -> None:
    """Restore the base from the cache's tarball, or bootstrap it and save the tarball."""
    cache = ctx.cache
    tarball = cache / f"base-{key}.tar.zst"
    lock = lock_file(cache / f"base-{key}.lock", 1800, f"the cache {tarball}", ctx.say)
    try:
        if tarball.exists():
            ctx.say(f"restoring {tarball}")
            if _restore(tarball, work, ctx):
                return
            ctx.say(f"{tarball} is damaged, building anew")
            tarball.unlink()
        _bootstrap(work, ctx)
        _save(work, tarball)
        for old in cache.glob("base-*.tar.zst"):
            if old != tarball:
                old.unlink()
    finally:
        unlock_file(lock)


def _restore(tarball: Path, work: Path, ctx: BaseContext) -> bool:
    proc = run(
        [
            "tar",
            "-C",
            str(work),
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "-I",
            "zstd -T0",
            "-xpf",
            str(tarball),
        ],
        check=False,
    )
    if proc.returncode == 0:
        return True
    unmount_below(work)
    for child in work.iterdir():
        delete_tree(child, ctx.top)
    return False


def _save(work: Path, tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_name(f".{tarball.name}.{os.getpid()}")
    try:
        run(
            [
                "tar",
                "-C",
                str(work),
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
                "-I",
                "zstd -T0 -3",
                "-cf",
                str(partial),
                ".",
            ]
        )
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        partial.rename(tarball)
    finally:
        partial.unlink(missing_ok=True)


def _bootstrap(work: Path, ctx: BaseContext) -> None:
    url = mirror()
    ctx.say(f"mmdebstrap {SUITE} from {url} ({len(PACKAGES)} packages and their deps)")

    def bootstrap() -> None:
        run(
            [
                "mmdebstrap",
                *MMDEBSTRAP_OPTIONS,
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(work),
                url,
            ],
            timeout=1200,
        )

    def empty() -> None:
        unmount_below(work)
        for child in work.iterdir():
            delete_tree(child, ctx.top)

    retry(f"mmdebstrap of Debian {SUITE} from {url}", ctx.say, bootstrap, empty)
    mtab = work / "etc/mtab"
    mtab.unlink(missing_ok=True)
    mtab.symlink_to("../proc/self/mounts")
    ctx.say(f"pip install {PYALPM} (built in the root)")
    resolv = work / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", work / "root/host-ca.crt")
    env = {"SSL_CERT_FILE": "/root/host-ca.crt", "PIP_CERT": "/root/host-ca.crt"}
    try:
        with ctx.mounted(work) as target:
            retry(
                f"pip install {PYALPM} from PyPI",
                ctx.say,
                lambda: run_in(
                    target,
                    [
                        "python3",
                        "-m",
                        "pip",
                        "install",
                        "--break-system-packages",
                        "--no-cache-dir",
                        "--no-build-isolation",
                        "--retries",
                        "5",
                        "--timeout",
                        "30",
                        PYALPM,
                    ],
                    env=env,
                ),
                lambda: None,
            )
            run_in(target, ["python3", "-c", "import pyalpm"])
    finally:
        resolv.unlink(missing_ok=True)
        (work / "root/host-ca.crt").unlink(missing_ok=True)
