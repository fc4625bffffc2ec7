"""libzypp's commit plugin: frames in, one core call each, ACK out.

libzypp starts the plugin (a child of zypper, in zypper's root) and sends it frames, as
STOMP has them: a command line, header lines, a blank line, a body, a NUL. A commit plugin
gets PLUGINBEGIN, then per commit COMMITBEGIN and COMMITEND (the body: the transaction's
steps as JSON), then PLUGINEND, and answers each with ACK (anything else: _ENOMETHOD).

COMMITBEGIN begins the layer; this process stays behind as its helper (ashcore/linger.py),
which seals it when COMMITEND asks through `ash-commit` and describes it once zypper is done.
A step whose stage is "err" at COMMITEND marks the layer failed. libzypp goes on with the
commit whatever a plugin answers: a begin that fails under on_error = "abort" cannot stop
zypper, so it says so and the next operation keeps the change as drift.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterator

from ashplugins.zypper.command import command_of, layer_name

from ashcore.hook import begin_hook, commit_hook, guarded, say

# On zypper's path: neither `typing` nor `subprocess` (with its threading and selectors): ms each.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

PLUGIN = "zypper"
COMMIT_HELPER = "/usr/libexec/ashlayers/ash-commit"


class Frame:
    def __init__(self, command: str, headers: dict[str, str], body: str) -> None:
        self.command, self.headers, self.body = command, headers, body


def parse(raw: bytes) -> Frame:
    text = raw.decode("utf-8", "replace").lstrip("\n")
    head, _, body = text.partition("\n\n")
    command, *lines = head.split("\n")
    headers = dict(line.split(":", 1) for line in lines if ":" in line)
    return Frame(command.strip(), {k.strip(): v.strip() for k, v in headers.items()}, body)


def frames(stream: IO[bytes]) -> Iterator[Frame]:
    """The frames libzypp sends, until it closes the pipe."""
    buffer = b""
    while True:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\0" in buffer:
            raw, _, buffer = buffer.partition(b"\0")
            yield parse(raw)


def answer(stream: IO[bytes], command: str = "ACK", headers: dict[str, str] | None = None) -> None:
    lines = "".join(f"{k}:{v}\n" for k, v in (headers or {}).items())
    stream.write(f"{command}\n{lines}\n".encode() + b"\0")
    stream.flush()


def steps(body: str) -> list[dict[str, Any]]:
    """The transaction's steps (JSON: {"TransactionStepList": [...]}); [] when unreadable."""
    try:
        found = json.loads(body).get("TransactionStepList", [])
    except (ValueError, AttributeError):
        return []
    return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []


def names(found: list[dict[str, Any]]) -> list[str]:
    solvables = (s.get("solvable") for s in found)
    return sorted({str(s["n"]) for s in solvables if isinstance(s, dict) and "n" in s})


class Session:
    """One plugin process: the commits of one zypper run."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.owner = os.getppid()
        self.argv = command_of(self.owner)
        self.open = False

    def begin(self, body: str) -> int:
        from ashplugins.dnf.rpmdb import RpmDatabase

        found = steps(body)
        if not found:
            return 0  # an empty transaction: nothing to keep
        code = begin_hook(
            root="/",
            plugin=PLUGIN,
            manager=PLUGIN,
            argv=self.argv,
            owner_pid=self.owner,
            database=RpmDatabase,
            targets=names(found),
            name=layer_name(self.argv),
            # This process forks the helper that seals the layer when COMMITEND asks and
            # describes it once zypper is done.
            commit=lambda exited: self._describe(exited),
        )
        if code != 0:
            say("zypper goes on without a layer (a commit plugin cannot stop it)")
            return 0
        self.open = True
        return 0

    def _describe(self, exited: float | None) -> object:
        from ashplugins.dnf.rpmdb import RpmDatabase

        return commit_hook(
            root="/",
            plugin=PLUGIN,
            manager=PLUGIN,
            argv=self.argv,
            owner_pid=self.owner,
            database=RpmDatabase,
            failed=None,
            helper=True,
            helper_exit=exited,
        )

    def end(self, body: str) -> int:
        if not self.open:
            return 0
        self.open = False
        failed = any(s.get("stage") == "err" for s in steps(body))
        if not failed and self._ask_helper():
            return 0
        from ashplugins.dnf.rpmdb import RpmDatabase

        commit_hook(
            root="/",
            plugin=PLUGIN,
            manager=PLUGIN,
            argv=self.argv,
            owner_pid=self.owner,
            database=RpmDatabase,
            failed=failed or None,
        )
        return 0

    def _ask_helper(self) -> bool:
        """The fast way: the helper seals (as the other managers' post hooks ask it)."""
        if not os.access(COMMIT_HELPER, os.X_OK):
            return False
        pid = os.posix_spawn(
            COMMIT_HELPER,
            [COMMIT_HELPER, self.store],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
        )
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0


def main(args: list[str]) -> int:
    """The plugin's loop; an error of its own is one line (ashcore.hook.guarded)."""
    store = args[0] if args else "/.ash"
    session = Session(store)
    out = sys.stdout.buffer
    for frame in frames(sys.stdin.buffer):
        if frame.command == "COMMITBEGIN":
            guarded(functools.partial(session.begin, frame.body), before=True)
        elif frame.command == "COMMITEND":
            guarded(functools.partial(session.end, frame.body), before=False)
        if frame.command in ("PLUGINBEGIN", "COMMITBEGIN", "COMMITEND", "PLUGINEND"):
            answer(out)
        elif frame.command == "_DISCONNECT":
            answer(out)
            break
        else:
            answer(out, "_ENOMETHOD", {"Command": frame.command})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
