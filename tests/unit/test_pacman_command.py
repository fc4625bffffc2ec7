"""pacman's argv as the hooks read it, and the layer name made from it (no root needed)."""

from __future__ import annotations

import os

import pytest
from ashplugins.pacman.command import (
    FALLBACK,
    command_of,
    layer_name,
    name_words,
    parse_cmdline,
    read_targets,
)


def test_cmdline_is_split_on_nul_and_keeps_empty_words() -> None:
    assert parse_cmdline(b"pacman\0-S\0vim\0") == ("pacman", "-S", "vim")
    assert parse_cmdline(b"pacman\0-S\0\0vim\0") == ("pacman", "-S", "", "vim")
    assert parse_cmdline(b"") == FALLBACK


def test_cmdline_keeps_bytes_that_are_not_utf8() -> None:
    words = parse_cmdline(b"pacman\0-U\0./caf\xe9.pkg.tar.zst\0")
    assert words[2].encode("utf-8", "surrogateescape") == b"./caf\xe9.pkg.tar.zst"


def test_command_of_reads_a_live_process_and_falls_back_for_a_dead_one() -> None:
    assert os.path.basename(command_of(os.getpid())[0]).startswith("python")
    assert command_of(2**22 + 12345) == FALLBACK


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["pacman", "-S", "vim"], "pacman -S vim"),
        (["/usr/bin/pacman", "-S", "--noconfirm", "vim"], "pacman -S vim"),
        (["pacman", "-Rns", "--noconfirm", "foo"], "pacman -Rns foo"),
        (["pacman", "-U", "./x.pkg.tar.zst"], "pacman -U ./x.pkg.tar.zst"),
        (["pacman", "-Syu", "--noconfirm", "--noprogressbar"], "pacman -Syu"),
        (["pacman", "--color", "never", "-S", "vim"], "pacman -S vim"),
        (["pacman", "--color=always", "-S", "vim"], "pacman -S vim"),
        (["pacman", "-S", "--needed", "vim"], "pacman -S --needed vim"),
        (["pacman", "--root", "/mnt", "-S", "vim"], "pacman --root /mnt -S vim"),
        (["pacman", "-S", "a b"], "pacman -S 'a b'"),
        (["pacman", "-S", "--", "--noconfirm"], "pacman -S -- --noconfirm"),
    ],
)
def test_layer_name_is_the_command_without_pacmans_manners(argv: list[str], name: str) -> None:
    assert layer_name(argv) == name


def test_name_words_drop_only_the_quiet_options() -> None:
    argv = ["pacman", "-S", "--noconfirm", "--confirm", "--debug", "--verbose", "vim"]
    assert name_words(argv) == ("pacman", "-S", "vim")


def test_a_long_or_odd_command_still_gives_a_valid_name() -> None:
    from ashcore.naming import MAX_NAME, check_name

    name = layer_name(["pacman", "-S", *(f"pkg{i}" for i in range(100))])
    assert len(name) <= MAX_NAME
    assert check_name(name) == name
    # A newline is shown as an escape, as ls -b shows it: one visible line.
    assert check_name(layer_name(["pacman", "-S", "a\nb"])) == "pacman -S 'a\\x0ab'"


def test_targets_are_one_a_line() -> None:
    assert read_targets(["ashtest-a\n", "ashtest-b\n", "\n"]) == ["ashtest-a", "ashtest-b"]
    assert read_targets([]) == []
