"""`ashctl`'s face: every argument and option of every command says what it takes."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from ashcore.cli import COMMANDS, _parser, main


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, argparse.Action]]:
    """Every action of `parser` and of its subparsers, with the commands that lead to it."""
    for action in parser._actions:
        yield path, parser, action
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, (*path, name))


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for path, _, action in _walk(_parser()):
        if isinstance(action, argparse._SubParsersAction):
            found |= {" ".join((*path, name)): child for name, child in action.choices.items()}
    return found


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or str(action.metavar or action.dest)


def test_every_argument_and_option_of_every_command_has_a_help() -> None:
    walked = list(_walk(_parser()))
    missing = [
        f"ashctl {' '.join(path)} {_name(action)}".replace("  ", " ")
        for path, _, action in walked
        if not isinstance(action, argparse._HelpAction)
        and (not action.help or not action.help.strip() or action.help == argparse.SUPPRESS)
    ]
    assert missing == []
    # The walk reached the subcommands' own arguments, not the top level alone.
    assert {("rollback",), ("run",), ("diff",), ("prune",)} <= {path for path, _, _ in walked}


def test_every_command_is_listed_with_a_help_of_its_own() -> None:
    (sub,) = (a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(helps) == set(COMMANDS)
    assert all(h and h.strip() for h in helps.values()), helps


def _words(text: str) -> str:
    return " ".join(text.split())  # argparse wraps long lines


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_each_command_runs_and_shows_each_arguments_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = _words(capsys.readouterr().out)
    assert out.startswith(f"usage: ashctl {command} ")
    for action in _subcommands()[command]._actions:
        assert action.help is not None
        assert _words(action.help % {"prog": f"ashctl {command}"}) in out, _name(action)


def test_rollback_help_says_what_its_layer_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rollback", "--help"])
    out = _words(capsys.readouterr().out)
    assert "LAYER a layer id or name (default: the parent of the deployment's layer)" in out


LAYER_ARGUMENTS = {
    ("show",): "layer",
    ("diff",): "a",
    ("rollback",): "layer",
    ("remove",): "layer",
    ("rebase",): "layer",
    ("deploy",): "layer",
    ("export",): "layer",
    ("pin",): "layer",
    ("unpin",): "layer",
    ("label",): "layer",
}


def test_every_layer_argument_refuses_an_empty_or_blank_reference() -> None:
    """Every argument that names a layer goes through one check (none is missed)."""
    from ashcore.cli import _layer_ref

    takes = {
        (path, action.dest)
        for path, _, action in _walk(_parser())
        if action.metavar in ("LAYER", "A", "B", "BASE", "FIRST[..LAST]")
    }
    assert {(p, d) for p, d in LAYER_ARGUMENTS.items()} <= takes
    for path, dest in takes:
        action = next(a for p, _, a in _walk(_parser()) if p == path and a.dest == dest)
        assert action.type is _layer_ref, (path, dest)


@pytest.mark.parametrize(
    "argv",
    [
        ["rollback", ""],
        ["rollback", "  "],
        ["rollback", "\t"],
        ["show", ""],
        ["diff", "", "2"],
        ["diff", "1", " "],
        ["remove", ""],
        ["rebase", "", "--onto", "1"],
        ["rebase", "2", "--onto", ""],
        ["deploy", ""],
        ["export", ""],
        ["pin", ""],
        ["unpin", " "],
    ],
)
def test_an_empty_layer_argument_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`ashctl rollback "$UNSET"` rolled back to the parent with exit 0: it is a usage error,
    told before anything (even the check for root) is looked at."""
    assert main(["--root", "/nonexistent-root", *argv]) == 2
    err = capsys.readouterr().err
    assert "empty LAYER" in err and len(err.strip().splitlines()) == 1, err


def test_the_layer_resolver_refuses_a_blank_reference(tmp_path: object) -> None:
    from pathlib import Path

    from ashcore.errors import UsageError
    from ashcore.store import Store

    store = Store(str(Path(str(tmp_path))))
    for ref in ("", " ", "\n"):
        with pytest.raises(UsageError):
            store.find(ref)
