"""The hook entry point translates pacman's run into one core call (the core faked)."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from ashplugins.pacman import hook


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def begin(self, **kwargs: Any) -> int:
        self.calls.append(("begin", kwargs))
        return 0

    def commit(self, **kwargs: Any) -> int:
        self.calls.append(("commit", kwargs))
        return 0


@pytest.fixture
def core(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(hook, "begin_hook", recorder.begin)
    monkeypatch.setattr(hook, "commit_hook", recorder.commit)
    monkeypatch.setattr(hook, "command_of", lambda pid: ("pacman", "-S", "--noconfirm", "vim"))
    return recorder


def test_pre_passes_pacman_its_targets_and_the_name(
    core: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("vim\nvim-runtime\n"))
    assert hook.main(["pre"]) == 0
    (what, args), *_ = core.calls
    assert what == "begin"
    assert args["root"] == "/" and args["plugin"] == "pacman" and args["manager"] == "pacman"
    assert args["argv"] == ("pacman", "-S", "--noconfirm", "vim")
    assert args["owner_pid"] == os.getppid()
    assert args["targets"] == ["vim", "vim-runtime"]
    assert args["name"] == "pacman -S vim"
    assert callable(args["database"])


def test_post_commits(core: Recorder) -> None:
    assert hook.main(["post"]) == 0
    (what, args), *_ = core.calls
    assert what == "commit" and args["owner_pid"] == os.getppid()
    assert "failed" not in args  # alpm gives a hook no way to know (see hook.py)


def test_a_bad_word_is_refused(core: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert hook.main([]) == 2
    assert hook.main(["prepare"]) == 2
    assert "usage" in capsys.readouterr().err
    assert core.calls == []


def test_the_database_face_of_a_root_without_pacman(tmp_path: Any) -> None:
    from ashplugins.pacman.database import PacmanDatabase

    assert PacmanDatabase().read_installed(str(tmp_path)) == {}


def test_local_database_entries_as_alpm_splits_them(tmp_path: Any) -> None:
    from ashplugins.pacman.database import PacmanDatabase, split_entry

    assert split_entry("ashtest-a-1.0-1") == ("ashtest-a", "1.0-1")
    assert split_entry("lib32-gcc-libs-1:14.2.1+r1-2") == ("lib32-gcc-libs", "1:14.2.1+r1-2")
    assert split_entry("ALPM_DB_VERSION") is None
    assert split_entry("a-1") is None
    local = tmp_path / "var/lib/pacman/local"
    for entry in ("ashtest-a-1.0-1", "ashtest-v-2.0-1", "python-foo-bar-0.1.r5.gabc-3"):
        (local / entry).mkdir(parents=True)
    (local / "ALPM_DB_VERSION").write_text("9\n")
    assert PacmanDatabase().read_installed(str(tmp_path)) == {
        "ashtest-a": "1.0-1",
        "ashtest-v": "2.0-1",
        "python-foo-bar": "0.1.r5.gabc-3",
    }
