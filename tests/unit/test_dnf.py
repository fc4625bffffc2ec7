"""The dnf plugin's parts that need no root: command lines, names, history, package sets."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path

import pytest
from ashplugins.dnf import dnf5
from ashplugins.dnf.actions import ActionsChannel, apply_transaction, transaction_order
from ashplugins.dnf.command import layer_name, plugin_disabled, read_cmdline
from ashplugins.dnf.history import last_transaction_failed
from ashplugins.dnf.libdnf5db import Dnf5Database
from ashplugins.dnf.rpmdb import installed_set


def _fake_proc(tmp_path: Path, pid: int, argv: list[str]) -> str:
    (tmp_path / str(pid)).mkdir()
    (tmp_path / str(pid) / "cmdline").write_bytes(b"".join(w.encode() + b"\0" for w in argv))
    return str(tmp_path)


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["dnf5", "install", "nginx"], "dnf5 install nginx"),
        (["/usr/bin/dnf", "install", "-y", "nginx"], "dnf install nginx"),
        (["dnf", "-y", "remove", "a b"], "dnf remove 'a b'"),
        (["dnf5", "--installroot=/srv/r", "upgrade", "-q"], "dnf5 upgrade"),
        (["dnf5", "--setopt", "x=1", "--releasever", "43", "install", "vim"], "dnf5 install vim"),
        (["dnf5", "--disable-plugin=x", "--best", "install", "vim"], "dnf5 --best install vim"),
        (["python3", "/tmp/front.py", "vim"], "python3 /tmp/front.py vim"),
    ],
)
def test_layer_name_from_the_managers_argv(tmp_path: Path, argv: list[str], name: str) -> None:
    proc = _fake_proc(tmp_path, 42, argv)
    assert read_cmdline(42, proc) == argv
    assert layer_name(read_cmdline(42, proc)) == name


def test_cmdline_of_a_gone_process_is_empty(tmp_path: Path) -> None:
    assert read_cmdline(99999, str(tmp_path)) == []


def test_cmdline_keeps_undecodable_bytes(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7/cmdline").write_bytes(b"dnf5\0install\0caf\xe9\0")
    assert read_cmdline(7, str(tmp_path))[2].encode("utf-8", "surrogateescape") == b"caf\xe9"


@pytest.mark.parametrize(
    ("argv", "disabled"),
    [
        (["dnf5", "install", "x"], False),
        (["dnf5", "--disable-plugin=ashlayers", "install", "x"], True),
        (["dnf5", "--disable-plugin", "ashlayers", "install", "x"], True),
        (["dnf", "--disableplugin=ash*", "install", "x"], True),
        (["dnf5", "--disable-plugin=foo,ashlayers", "install", "x"], True),
        (["dnf5", "--disable-plugin=*", "--enable-plugin=ashlayers", "install"], False),
        (["dnf5", "--disable-plugin=actions", "install", "x"], False),
        (["dnf5", "install", "--", "--disable-plugin=ashlayers"], False),
    ],
)
def test_plugin_switches_on_the_command_line(argv: list[str], disabled: bool) -> None:
    assert plugin_disabled(argv) is disabled


def _history(path: Path, states: list[str]) -> None:
    path.mkdir(parents=True)
    db = sqlite3.connect(path / "transaction_history.sqlite")
    db.executescript(
        "CREATE TABLE trans_state (id INTEGER PRIMARY KEY, name TEXT);"
        "INSERT INTO trans_state VALUES (1, 'Started'), (2, 'Ok'), (3, 'Error');"
        "CREATE TABLE trans (id INTEGER PRIMARY KEY, state_id INTEGER);"
    )
    ids = {"Started": 1, "Ok": 2, "Error": 3}
    db.executemany("INSERT INTO trans (state_id) VALUES (?)", [(ids[s],) for s in states])
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("states", "failed"),
    [(["Ok"], False), (["Ok", "Error"], True), (["Error", "Ok"], False), (["Started"], True)],
)
def test_dnf5_history_tells_a_failed_transaction(
    tmp_path: Path, states: list[str], failed: bool
) -> None:
    _history(tmp_path / "usr/lib/sysimage/libdnf5", states)
    assert last_transaction_failed(str(tmp_path), "/usr/lib/sysimage/libdnf5") is failed


def test_no_dnf5_history_is_not_a_failure(tmp_path: Path) -> None:
    assert last_transaction_failed(str(tmp_path), "/usr/lib/sysimage/libdnf5") is False
    (tmp_path / "h").mkdir()
    (tmp_path / "h/transaction_history.sqlite").write_bytes(b"not a database")
    assert last_transaction_failed(str(tmp_path), "/h") is False


def _reply(domain: str, items: list[dict[str, str]]) -> bytes:
    body = {"op": "reply", "requested_op": "get", "domain": domain, "status": "OK"}
    return json.dumps(body | {"return": {domain: items}}).encode() + b"\n"


def test_channel_asks_the_actions_plugin_in_json() -> None:
    read_fd, write_fd = os.pipe()
    items = [{"name": "b", "arch": "noarch", "evr": "1-1", "action": "I"}]
    channel = ActionsChannel(write_fd, io.BytesIO(_reply("trans_packages", items)))
    try:
        assert channel.transaction() == items
        assert channel.transaction() == items  # asked once
        request = os.read(read_fd, 4096)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert request.endswith(b"\n") and request.count(b"\n") == 1
    sent = json.loads(request)
    assert sent["op"] == "get" and sent["domain"] == "trans_packages"
    assert sent["args"]["output"] == ["name", "arch", "evr", "action"]


def test_channel_stop_sends_one_request() -> None:
    read_fd, write_fd = os.pipe()
    try:
        ActionsChannel(write_fd, io.BytesIO()).stop("no")
        sent = json.loads(os.read(read_fd, 4096))
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert sent == {"op": "stop", "args": {"message": "no"}}


@pytest.mark.parametrize(
    "reply",
    [b"", b"garbage\n", b'{"status": "ERROR", "message": "no"}\n', b'{"status": "OK"}\n'],
)
def test_channel_without_an_answer(reply: bytes) -> None:
    with open(os.devnull, "wb") as sink:
        assert ActionsChannel(sink.fileno(), io.BytesIO(reply)).installed() is None


UPGRADE = [
    {"name": "v", "arch": "noarch", "evr": "1.0-1", "action": "O"},
    {"name": "v", "arch": "noarch", "evr": "2.0-1", "action": "U"},
    {"name": "a", "arch": "noarch", "evr": "1.0-1", "action": "I"},
    {"name": "gone", "arch": "x86_64", "evr": "3-1", "action": "E"},
    {"name": "kept", "arch": "x86_64", "evr": "1-1", "action": "?"},
]


def test_apply_transaction() -> None:
    before = [("v", "noarch", "1.0-1"), ("gone", "x86_64", "3-1"), ("kept", "x86_64", "1-1")]
    assert sorted(apply_transaction(before, UPGRADE)) == [
        ("a", "noarch", "1.0-1"),
        ("kept", "x86_64", "1-1"),
        ("v", "noarch", "2.0-1"),
    ]


def test_reinstall_keeps_the_package() -> None:
    before = [("v", "noarch", "1.0-1")]
    reinstall = [
        {"name": "v", "arch": "noarch", "evr": "1.0-1", "action": "O"},
        {"name": "v", "arch": "noarch", "evr": "1.0-1", "action": "R"},
    ]
    assert apply_transaction(before, reinstall) == before


def test_transaction_order_is_libdnf5s_verdict() -> None:
    assert transaction_order(UPGRADE) == {("1.0-1", "2.0-1"): -1, ("2.0-1", "1.0-1"): 1}
    down = [dict(UPGRADE[0], evr="2.0-1"), dict(UPGRADE[1], evr="1.0-1", action="D")]
    assert transaction_order(down) == {("2.0-1", "1.0-1"): 1, ("1.0-1", "2.0-1"): -1}


def _channel(installed: list[dict[str, str]], transaction: list[dict[str, str]]) -> ActionsChannel:
    """A channel that answers as the actions plugin would, in the order the hook asks."""
    replies = _reply("packages", installed) + _reply("trans_packages", transaction)
    return ActionsChannel(os.open(os.devnull, os.O_WRONLY), io.BytesIO(replies))


def test_dnf5_database_after_the_transaction() -> None:
    installed = [{"name": "v", "arch": "noarch", "evr": "1.0-1"}]
    db = Dnf5Database(_channel(installed, UPGRADE[:3]), after_transaction=True)
    assert db.read_installed("/") == {"v": "2.0-1", "a": "1.0-1"}
    assert db.compare_versions("1.0-1", "2.0-1") < 0
    assert db.compare_versions("2.0-1", "2.0-1") == 0


def test_dnf5_database_before_the_transaction() -> None:
    installed = [{"name": "v", "arch": "noarch", "evr": "0:1.0-1"}]
    channel = ActionsChannel(
        os.open(os.devnull, os.O_WRONLY), io.BytesIO(_reply("packages", installed))
    )
    assert Dnf5Database(channel, after_transaction=False).read_installed("/") == {"v": "1.0-1"}


def test_dnf5_entry_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert dnf5.main(["begin", "/"]) == 2
    assert dnf5.main(["start", "/", "1", "/h"]) == 2
    assert dnf5.main(["begin", "/", "x", "/h"]) == 2
    assert "usage" in capsys.readouterr().err


def _by_order(a: str, b: str) -> int:
    return (a > b) - (a < b)


def test_installed_set_keys_and_versions() -> None:
    entries = [
        ("bash", "x86_64", "5.2-1"),
        ("glibc", "x86_64", "2.40-1"),
        ("glibc", "i686", "2.40-1"),
        ("kernel", "x86_64", "6.9-1"),
        ("kernel", "x86_64", "6.10-1"),
        ("gpg-pubkey", "", "abc-1"),
        ("zero", "noarch", "0:1.0-1"),
        ("one", "noarch", "1:1.0-1"),
    ]
    assert installed_set(entries, _by_order) == {
        "bash": "5.2-1",
        "glibc.x86_64": "2.40-1",
        "glibc.i686": "2.40-1",
        "kernel": "6.10-1, 6.9-1",
        "zero": "1.0-1",
        "one": "1:1.0-1",
    }


def test_rpm_version_order() -> None:
    pytest.importorskip("rpm", reason="rpm's Python bindings are not installed here")
    from ashplugins.dnf.rpmdb import RpmDatabase

    db = RpmDatabase()
    assert db.compare_versions("1.0-1", "2.0-1") < 0
    assert db.compare_versions("1:1.0-1", "2.0-1") > 0
    assert db.compare_versions("1.10-1", "1.9-1") > 0
    assert db.compare_versions("6.9-1, 6.10-1", "6.9-1") > 0
