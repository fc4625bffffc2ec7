"""A qemu guest booted from the boot tier's image, driven through its serial console.

    with VM(image, workdir) as vm:          # qemu on a qcow2 overlay: the image stays clean
        vm.boot()                           # waits for the console's READY marker
        result = vm.run("findmnt -no SOURCE,OPTIONS /")
        vm.reboot(menu_keys=["l", "1"])     # GRUB's menu: hotkey l (a submenu), then 1

qemu runs with TCG (`-accel tcg`: KVM guests hang on these machines, nested virtualisation does
not work), no network, the serial port on qemu's stdio. The guest's console shell
(tests/boot/image.py, ash-console.service) prints READY_MARKER, then reads commands with echo
off. Each command is sent as base64 (no quoting trouble, nothing echoed), run with stdin from
/dev/null and its output into a file (not the terminal: findmnt and friends would cut lines
at 80 columns), which is then printed between a begin marker and an end marker carrying the
exit code.

GRUB shows its menu on the serial console for a few seconds (tests/boot/image.py). A boot or
reboot given `menu_keys` picks an entry: one string per menu GRUB draws, sent when that menu's
help line (MENU_MARKER) appears. ["l", "1"]: hotkey l in the main menu (a submenu made with
`--hotkey=l`), then hotkey 1 in the submenu; [HOME + DOWN + ENTER]: the second entry (VT100
keys: UP, DOWN, HOME, ENTER below); [ENTER]: the default entry, at once. A key stops GRUB's
countdown, so a slow host loses nothing; a menu that does not come within MENU_TIMEOUT, or a
boot that reaches the console before it, is a VMError with the console's tail. Boot.entry is
the title of the entry GRUB booted (its "Booting `...'" line).

Everything the guest printed goes to `console.log` in the work dir (the first place to look
when a test fails). qemu is killed on every way out of the `with` block. A qemu that cannot
start, or exits, or a guest that does not reach its marker in time, is a VMError that says why
and ends with the console's last lines.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tests.boot.image import READY_MARKER

QEMU = "qemu-system-x86_64"
MEMORY = "1024"
BOOT_TIMEOUT = 240.0  # TCG; a boot took about N s here (see README)
COMMAND_TIMEOUT = 300.0
CHUNK = 2048  # base64 characters per console line (a tty line holds at most 4095 bytes)
# GRUB's menu (main menu and submenus alike) ends with this help text (GRUB 2.12-2.14, an
# 80-column serial terminal); the keys for that menu are sent when it appears
MENU_MARKER = "Press enter to boot the selected OS"
MENU_TIMEOUT = 120.0  # from qemu's start or the reboot command to a menu (a reboot: ~15-40 s)
UP, DOWN, HOME, ENTER = "\x1b[A", "\x1b[B", "\x1b[H", "\r"
BOOTING = re.compile(r"Booting `([^'\n]*)'")  # GRUB's line for the entry it boots


class VMError(Exception):
    """The VM could not start, died, or did not answer in time; the message says why."""


@dataclass(frozen=True)
class Result:
    command: str
    returncode: int
    output: str
    seconds: float

    def check(self) -> Result:
        if self.returncode != 0:
            raise AssertionError(
                f"in the VM: $ {self.command}\nexit code {self.returncode}\n{self.output}"
            )
        return self


@dataclass(frozen=True)
class Boot:
    boot_id: str
    seconds: float  # from qemu's start (or the reboot command) to the console's marker
    uptime: float  # the guest kernel's uptime at the marker
    entry: str | None = None  # the GRUB entry booted (its "Booting `<title>'" line)


def missing_tools() -> list[str]:
    return [t for t in (QEMU, "qemu-img") if shutil.which(t) is None]


class VM:
    def __init__(self, image: Path, workdir: Path, *, memory: str = MEMORY, cpus: int = 1) -> None:
        self.image = image
        self.workdir = workdir
        self.memory = memory
        self.cpus = cpus
        self.overlay = workdir / "overlay.qcow2"
        self.log_path = workdir / "console.log"
        self.boots: list[Boot] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = ""
        self._seen = 0  # offset in _buffer up to which output was consumed
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._count = 0
        self._log: TextIO | None = None

    # lifecycle

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Make the overlay and start qemu (VMError when it cannot)."""
        if missing := missing_tools():
            raise VMError(f"host tools missing: {' '.join(missing)} (run tests/host-deps.sh)")
        if not self.image.is_file():
            raise VMError(f"no disk image at {self.image}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.overlay.unlink(missing_ok=True)
        made = subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.image),
             str(self.overlay)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if made.returncode != 0:
            raise VMError(f"qemu-img create failed: {made.stderr.strip()}")
        argv = [
            QEMU, "-accel", "tcg", "-machine", "pc", "-cpu", "max",
            "-m", self.memory, "-smp", str(self.cpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
            "-serial", "stdio", "-monitor", "none", "-nic", "none",
            "-drive", f"file={self.overlay},format=qcow2,if=virtio,cache=unsafe,discard=unmap",
        ]  # fmt: skip
        self._log = open(self.log_path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._log.write(f"$ {' '.join(argv)}\n")
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise VMError(f"cannot start {QEMU}: {exc}") from exc
        self._started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        """Kill qemu (its whole process group) and wait for it; idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc is not None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._proc = None

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            text = chunk.decode("utf-8", errors="replace").replace("\r", "")
            with self._cond:
                if chunk:
                    self._buffer += text
                    if self._log is not None:
                        self._log.write(text)
                        self._log.flush()
                self._cond.notify_all()
            if not chunk:
                return

    # waiting for output

    def tail(self, lines: int = 40) -> str:
        with self._cond:
            return "\n".join(self._buffer.splitlines()[-lines:])

    def _wait_for(self, pattern: re.Pattern[str], timeout: float, what: str) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = pattern.search(self._buffer, self._seen)
                if found:
                    self._seen = found.end()
                    return found
                assert self._proc is not None
                code = self._proc.poll()
                if code is not None:
                    raise VMError(
                        f"qemu exited with code {code} while waiting for {what}; "
                        f"console ({self.log_path}), last lines:\n{self.tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise VMError(
                        f"no {what} within {timeout:.0f} s; console ({self.log_path}), "
                        f"last lines:\n{self.tail()}"
                    )
                self._cond.wait(min(left, 1.0))

    def _ready(self, since: float, timeout: float, offset: int) -> Boot:
        """Wait for the console's marker; offset: where in the console this boot began."""
        marker = re.compile(re.escape(READY_MARKER) + r" (\S+) (\S+)\n")
        found = self._wait_for(marker, timeout, f"boot to the console ({READY_MARKER})")
        entries = BOOTING.findall(self._buffer, offset, found.start())
        boot = Boot(
            found.group(1),
            time.monotonic() - since,
            float(found.group(2)),
            entries[-1] if entries else None,
        )
        self.boots.append(boot)
        return boot

    def _send(self, data: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(data.encode())
            self._proc.stdin.flush()
        except BrokenPipeError as exc:
            raise VMError(
                f"qemu's console is closed (qemu exited?); last lines:\n{self.tail()}"
            ) from exc

    def _choose(self, menu_keys: list[str] | tuple[str, ...], timeout: float) -> None:
        """For each string in menu_keys: wait for a GRUB menu to be drawn, send the string."""
        either = re.compile(f"({re.escape(MENU_MARKER)})|{re.escape(READY_MARKER)} ")
        for n, keys in enumerate(menu_keys, 1):
            what = f"GRUB's menu {n} of {len(menu_keys)} (for the keys {keys!r}: {MENU_MARKER!r})"
            found = self._wait_for(either, timeout, what)
            if not found.group(1):
                raise VMError(
                    f"the guest booted to its console before {what} (keys {menu_keys!r}); "
                    f"console ({self.log_path}), last lines:\n{self.tail()}"
                )
            self._send(keys)

    # what a test does

    def boot(
        self, timeout: float = BOOT_TIMEOUT, menu_keys: list[str] | tuple[str, ...] = ()
    ) -> Boot:
        """Start qemu and wait for the console; menu_keys: the GRUB entry to boot (see above)."""
        self.start()
        self._choose(menu_keys, MENU_TIMEOUT)
        return self._ready(self._started, timeout, 0)

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> Result:
        """Run a shell command in the guest; its output (stdout and stderr) and exit code."""
        assert self._proc is not None and self._proc.stdin is not None
        self._count += 1
        end = f"ASH-END-{self._count}"
        encoded = base64.b64encode(command.encode()).decode()
        # the console's tty takes lines of at most 4095 bytes (canonical mode): a long
        # command goes in pieces, appended to a file
        pieces = [encoded[i : i + CHUNK] for i in range(0, len(encoded), CHUNK)] or [""]
        line = "\n".join(
            f"echo {p} {'>' if n == 0 else '>>'} /tmp/ash-cmd.b64" for n, p in enumerate(pieces)
        )
        line += (
            "; base64 -d /tmp/ash-cmd.b64 > /tmp/ash-cmd; "
            f"echo ASH-BEGIN-{self._count}; "
            f"sh /tmp/ash-cmd </dev/null >/tmp/ash-out 2>&1; rc=$?; cat /tmp/ash-out; "
            f'echo "{end}=$rc"\n'
        )
        started = time.monotonic()
        self._send(line)
        self._wait_for(re.compile(f"ASH-BEGIN-{self._count}\n"), 60, f"the start of `{command}`")
        begin = self._seen
        found = self._wait_for(
            re.compile(re.escape(end) + r"=(\d+)\n"), timeout, f"the end of `{command}`"
        )
        output = self._buffer[begin : found.start()]
        return Result(command, int(found.group(1)), output, time.monotonic() - started)

    def reboot(
        self, timeout: float = BOOT_TIMEOUT, menu_keys: list[str] | tuple[str, ...] = ()
    ) -> Boot:
        """`systemctl reboot` in the guest (qemu restarts it in place); wait for the console.
        menu_keys: the GRUB entry to boot (see above)."""
        previous = self.boots[-1].boot_id if self.boots else None
        started = time.monotonic()
        with self._cond:
            offset = len(self._buffer)
        self._send("sync; systemctl reboot\n")
        self._choose(menu_keys, MENU_TIMEOUT)
        boot = self._ready(started, timeout, offset)
        if boot.boot_id == previous:
            raise VMError(f"the guest printed its marker again without rebooting ({previous})")
        return boot
