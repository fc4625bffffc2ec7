"""A qemu guest booted from the boot tier's image, driven through its serial console.

    with VM(image, workdir) as vm:          # qemu on a qcow2 overlay: the image stays clean
        vm.boot()                           # waits for the console's READY marker
        result = vm.run("findmnt -no SOURCE,OPTIONS /")
        vm.reboot()

qemu runs with TCG (`-accel tcg`: KVM guests hang on these machines, nested virtualisation does
not work), no network, the serial port on qemu's stdio. The guest's console shell
(tests/boot/image.py, ash-console.service) prints READY_MARKER, then reads commands with echo
off. Each command is sent as base64 (no quoting trouble, nothing echoed), run with stdin from
/dev/null and its output into a file (not the terminal: findmnt and friends would cut lines
at 80 columns), which is then printed between a begin marker and an end marker carrying the
exit code.

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

from tests.boot.image import READY_MARKER

QEMU = "qemu-system-x86_64"
MEMORY = "1024"
BOOT_TIMEOUT = 240.0  # TCG; a boot took about N s here (see README)
COMMAND_TIMEOUT = 300.0


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
        self._log = None

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

    def _ready(self, since: float, timeout: float) -> Boot:
        marker = re.compile(re.escape(READY_MARKER) + r" (\S+) (\S+)\n")
        found = self._wait_for(marker, timeout, f"boot to the console ({READY_MARKER})")
        boot = Boot(found.group(1), time.monotonic() - since, float(found.group(2)))
        self.boots.append(boot)
        return boot

    # what a test does

    def boot(self, timeout: float = BOOT_TIMEOUT) -> Boot:
        """Start qemu and wait for the console."""
        self.start()
        return self._ready(self._started, timeout)

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> Result:
        """Run a shell command in the guest; its output (stdout and stderr) and exit code."""
        assert self._proc is not None and self._proc.stdin is not None
        self._count += 1
        end = f"ASH-END-{self._count}"
        encoded = base64.b64encode(command.encode()).decode()
        line = (
            f"echo {encoded} | base64 -d > /tmp/ash-cmd; "
            f"echo ASH-BEGIN-{self._count}; "
            f"sh /tmp/ash-cmd </dev/null >/tmp/ash-out 2>&1; rc=$?; cat /tmp/ash-out; "
            f'echo "{end}=$rc"\n'
        )
        started = time.monotonic()
        self._proc.stdin.write(line.encode())
        self._proc.stdin.flush()
        self._wait_for(re.compile(f"ASH-BEGIN-{self._count}\n"), 60, f"the start of `{command}`")
        begin = self._seen
        found = self._wait_for(
            re.compile(re.escape(end) + r"=(\d+)\n"), timeout, f"the end of `{command}`"
        )
        output = self._buffer[begin : found.start()]
        return Result(command, int(found.group(1)), output, time.monotonic() - started)

    def reboot(self, timeout: float = BOOT_TIMEOUT) -> Boot:
        """`systemctl reboot` in the guest (qemu restarts it in place); wait for the console."""
        assert self._proc is not None and self._proc.stdin is not None
        previous = self.boots[-1].boot_id if self.boots else None
        started = time.monotonic()
        self._proc.stdin.write(b"sync; systemctl reboot\n")
        self._proc.stdin.flush()
        boot = self._ready(started, timeout)
        if boot.boot_id == previous:
            raise VMError(f"the guest printed its marker again without rebooting ({previous})")
        return boot
