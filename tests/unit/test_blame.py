"""Blame's parts without a filesystem: the kept change lists, the paths, the rendering, and
each manager's reading of its own owner query."""

from __future__ import annotations

import pytest

from ashcore.blame import Blame, Blamed, relative, render, to_json
from ashcore.changes import COMPRESS_OVER, Changes
from ashcore.errors import UsageError
from ashcore.model import Layer, Status
from ashcore.registry import managers

PATHS = [
    "etc/ssh/sshd_config",
    "etc/ssh-x",
    "etc/ssh/a/b",
    "etc/ssh",
    "etc/sshz",
    "usr/bin/x",
    "etc/new\nline",
    "etc/\udcff",  # a byte that is not UTF-8, as os.fsdecode gives it
]


def test_a_change_list_finds_a_path_and_what_a_folder_holds() -> None:
    kept = Changes.of(3, PATHS)
    assert kept.touches("/etc/ssh/sshd_config") == ["etc/ssh/sshd_config"]
    assert kept.touches("etc/ssh") == ["etc/ssh", "etc/ssh/a/b", "etc/ssh/sshd_config"]
    assert kept.touches("etc/ssh/a") == ["etc/ssh/a/b"]  # not named itself: what it holds
    assert kept.touches("etc/ss") == []  # a prefix of a name is not the name
    assert kept.touches("usr") == ["usr/bin/x"]
    assert kept.touches("etc/new\nline") == ["etc/new\nline"]
    assert kept.touches("etc/\udcff") == ["etc/\udcff"]
    assert kept.touches("") == sorted(kept.paths())
    assert Changes.of(None, []).touches("etc") == []


@pytest.mark.parametrize("count", [3, 5000])
def test_a_change_list_survives_its_file_plain_or_compressed(count: int) -> None:
    paths = PATHS + [f"usr/share/doc/p/{i}" for i in range(count)]
    kept = Changes.of(7, paths)
    data = kept.to_bytes()
    assert data.split(b"\n", 1)[0].endswith(b"zlib" if len(kept.body) > COMPRESS_OVER else b"plain")
    back = Changes.from_bytes(data)
    assert back is not None and back.against == 7 and sorted(back.paths()) == sorted(set(paths))
    if count > 1000:
        assert len(data) < len(kept.body) / 3  # compressed when large


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"ashlayers-changes 1 ",  # torn in the header
        b"ashlayers-changes 2 3 plain\n\0a\0",  # a format this code does not know
        b"ashlayers-changes 1 x plain\n\0a\0",
        b"ashlayers-changes 1 3 zlib\n\0a\0",  # not zlib
        b"ashlayers-changes 1 3 plain\n\0a",  # torn in the body
        b"ashlayers-changes 1 3 gzip\n\0a\0",
    ],
)
def test_a_torn_or_unknown_list_is_not_believed(data: bytes) -> None:
    assert Changes.from_bytes(data) is None


def test_a_path_is_taken_as_the_root_sees_it() -> None:
    assert relative("/etc/ssh/") == "etc/ssh"
    assert relative("etc//ssh/./sshd_config") == "etc/ssh/sshd_config"
    assert relative("/../../etc/x") == "etc/x"  # never above the root
    assert relative("/") == ""
    with pytest.raises(UsageError):
        relative("")


def _layer(layer_id: int, name: str) -> Layer:
    return Layer(layer_id, name, layer_id - 1 or None, None, name, Status.COMMITTED, "2026-12-02")


def test_blame_renders_each_layer_with_what_it_did_and_the_owner() -> None:
    result = Blame(
        "etc/x",
        (
            Blamed(_layer(9, "rm x"), ("etc/x",), removed=True),
            Blamed(_layer(5, "apt-get install x"), ("etc/x",), owners={"apt": ["x", "y"]}),
            Blamed(_layer(4, "drift: etc"), ("etc/x",), since=2),
            Blamed(_layer(1, "base"), ("etc/x",), base=True),
        ),
        (3,),
    )
    lines = render(result, 9, {5: ["mail"]})
    assert lines[0] == "/etc/x: 4 layers, newest first"
    assert lines[1].startswith("*    9") and lines[1].endswith("rm x  (removed it)")
    assert lines[2].endswith("apt-get install x  (apt: x, y; label mail)")
    assert "layers since 2" in lines[3]
    assert "base: there when the store was set up" in lines[4]
    assert lines[5].startswith("unknown: 1 layers (3)")
    data = to_json(result, {5: ["mail"]})
    first = data["layers"][1]  # type: ignore[index]
    assert first["owners"] == {"apt": ["x", "y"]} and first["labels"] == ["mail"]
    assert first["paths"] == ["/etc/x"] and data["unknown"] == [3]
    assert render(Blame("etc/y", (), ()), None, {}) == ["/etc/y: no layer changed it"]
    shown = render(Blame("etc/\x1b", (), ()), None, {})[0]
    assert "\x1b" not in shown  # a terminal escape is shown escaped


def test_each_manager_reads_its_own_owner_answer() -> None:
    by_name = {m.name: m for m in managers()}
    apt = by_name["apt"]
    said = (
        "diversion by dash from: /bin/sh\n"
        "libc6:amd64, libc-bin: /etc/ld.so.conf\n"
        "other: /etc/ld.so.conf.d\n"
    )
    assert apt.owners_said(said, "/etc/ld.so.conf") == ["libc-bin", "libc6"]
    assert apt.owners_said("diversion by dash to: /bin/sh.distrib\n", "/bin/sh") == []
    assert by_name["dnf"].owners_said("ashtest-v\nashtest-v\n", "/x") == ["ashtest-v"]
    assert by_name["pacman"].owners_said("ashtest-a\n", "/x") == ["ashtest-a"]
    # Each database is asked once: a second front end of the rpmdb asks nothing.
    queries = [m.owner_query for m in managers() if m.owner_query]
    assert len(queries) == len({q[0] for q in queries}) >= 3
    assert all(q[-1] == "--" for q in queries)  # a path that starts with '-' is a path
    assert by_name["zypper"].owner_of("/", "/etc/x") is None
