"""The zypper plugin's face: libzypp's frames, the steps, the names, the declaration."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from ashplugins.zypper import hook
from ashplugins.zypper.command import layer_name
from ashplugins.zypper.manager import Zypper

STEPS = {
    "TransactionStepList": [
        {"type": "+", "stage": "ok", "solvable": {"k": "package", "n": "htop", "v": "3.3"}},
        {"type": "-", "stage": "err", "solvable": {"k": "package", "n": "nano", "v": "8"}},
    ]
}


def frame(command: str, body: str = "", headers: str = "") -> bytes:
    return f"{command}\n{headers}\n{body}".encode() + b"\0"


def test_frames_are_read_whole_across_reads() -> None:
    data = frame("PLUGINBEGIN", headers="userdata:x\n") + frame("COMMITBEGIN", json.dumps(STEPS))
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    with os.fdopen(read, "rb") as stream:
        got = list(hook.frames(stream))
    assert [f.command for f in got] == ["PLUGINBEGIN", "COMMITBEGIN"]
    assert got[0].headers == {"userdata": "x"}
    assert hook.names(hook.steps(got[1].body)) == ["htop", "nano"]


def test_steps_of_a_body_that_is_not_json_are_none() -> None:
    assert hook.steps("") == [] and hook.steps("{") == [] and hook.steps("[1]") == []


def test_answer_is_a_frame() -> None:
    out = io.BytesIO()
    hook.answer(out)
    hook.answer(out, "_ENOMETHOD", {"Command": "X"})
    assert out.getvalue() == b"ACK\n\n\0_ENOMETHOD\nCommand:X\n\n\0"


def test_the_plugin_acknowledges_every_frame_and_refuses_unknown_ones(tmp_path) -> None:
    """Run as libzypp runs it, with an empty transaction (no layer: no store needed)."""
    frames = frame("PLUGINBEGIN") + frame("COMMITBEGIN", "{}") + frame("COMMITEND", "{}")
    frames += frame("WHATEVER") + frame("PLUGINEND")
    done = subprocess.run(
        [sys.executable, "-m", "ashplugins.zypper.hook", str(tmp_path)],
        input=frames,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    replies = done.stdout.split(b"\0")[:-1]
    assert replies == [b"ACK\n\n"] * 3 + [b"_ENOMETHOD\nCommand:WHATEVER\n\n", b"ACK\n\n"]


def test_layer_name_and_replay() -> None:
    assert layer_name(["/usr/bin/zypper", "--non-interactive", "install", "htop"]) == (
        "zypper install htop"
    )
    zypper = Zypper()
    assert zypper.replay_argv(["zypper", "in", "htop"]) == [
        "zypper",
        "--non-interactive",
        "in",
        "htop",
    ]
    assert zypper.replay_argv(["zypper", "-n", "rm", "htop"]) == ["zypper", "-n", "rm", "htop"]
    assert zypper.replay_argv(["zypper", "refresh"]) is None
    assert zypper.shares_database == "dnf"
