"""A recipe is untrusted input: checked whole before anything runs, and whatever it writes or
removes stays inside the root it is applied to (resolved as the root sees it). No root is
needed here: the recipes below hold only bundles (no command runs, nothing is mounted), and
every file a bundle makes is owned by the user running the tests."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ashcore.errors import AshError, UsageError
from ashcore.ondisk import write_all, write_new_file
from ashcore.recipe import apply
from ashcore.target import Target


@dataclass
class Entry:
    """One member of a bundle made by a test."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    device: tuple[int, int] = (0, 0)
    pax: dict[str, str] = field(default_factory=dict)


def bundle(path: Path, *entries: Entry) -> str:
    """Write a tar of `entries` at `path`; return its sha256."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.linkname = e.kind, e.mode, e.link
            info.uid, info.gid = os.getuid(), os.getgid()
            info.devmajor, info.devminor = e.device
            info.size = len(e.data)
            info.pax_headers = e.pax
            tar.addfile(info, io.BytesIO(e.data) if e.kind == tarfile.REGTYPE else None)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_op(folder: Path, name: str, *entries: Entry, remove: tuple[str, ...] = ()) -> str:
    digest = bundle(folder / name, *entries)
    removed = ", ".join(f'"{p}"' for p in remove)
    return (
        f'\n[[operation]]\nname = "drift"\nfiles = "{name}"\nsha256 = "{digest}"\n'
        f"remove = [{removed}]\n"
    )


def recipe(folder: Path, *operations: str, head: str = 'version = 2\nbase = "base"\n') -> str:
    path = folder / "recipe.toml"
    path.write_text(head + "".join(operations))
    return str(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    for d in ("etc/keep", "var", "run", "dev", "boot", "usr/bin"):
        (r / d).mkdir(parents=True)
    (r / "etc/keep/file").write_text("kept\n")
    (r / "dev/null").write_text("not a device, the test's own\n")
    return r


def run(root: Path, path: str, *, dry_run: bool = False) -> list[str]:
    said: list[str] = []
    apply(Target(str(root)), path, said.append, dry_run=dry_run)
    return said


# -- writes stay inside the root ------------------------------------------------------------
def test_a_member_through_an_absolute_symlink_stays_in_the_root(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-folder"
    outside.mkdir()
    (root / "var/cache").symlink_to(outside)  # absolute: the host's folder, not the root's
    path = recipe(tmp_path, files_op(tmp_path, "b.tar", Entry("var/cache/x", data=b"in\n")))
    with pytest.raises(AshError, match="symlink to nothing"):
        run(root, path)
    assert list(outside.iterdir()) == []


def test_a_member_through_var_run_is_refused_as_the_roots_run(root: Path, tmp_path: Path) -> None:
    (root / "var/run").symlink_to("/run")
    name = f"ashlayers-test-{os.getpid()}-{tmp_path.name}"
    host = Path("/run") / name
    path = recipe(tmp_path, files_op(tmp_path, "b.tar", Entry(f"var/run/{name}", data=b"x")))
    try:
        with pytest.raises(UsageError, match="never touches"):
            run(root, path)
        assert not host.exists() and not (root / "run" / name).exists()
    finally:
        if host.exists():  # the old tar extraction wrote it: remove what this test made
            host.unlink()


def test_a_symlink_in_one_bundle_then_a_file_through_it(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-folder"
    outside.mkdir()
    first = files_op(tmp_path, "1.tar", Entry("etc/link", tarfile.SYMTYPE, link=str(outside)))
    second = files_op(tmp_path, "2.tar", Entry("etc/link/planted", data=b"owned\n"))
    with pytest.raises(AshError):
        run(root, recipe(tmp_path, first, second))
    assert list(outside.iterdir()) == []
    assert os.readlink(root / "etc/link") == str(outside)  # the first bundle was applied


def test_a_relative_symlink_resolves_as_the_root_sees_it(root: Path, tmp_path: Path) -> None:
    """`..` past the root's top stays at the top, as it does for a chrooted program."""
    up = files_op(tmp_path, "1.tar", Entry("etc/up", tarfile.SYMTYPE, link="../../../../../.."))
    through = files_op(tmp_path, "2.tar", Entry("etc/up/usr/bin/tool", data=b"#!\n", mode=0o755))
    run(root, recipe(tmp_path, up, through))
    assert (root / "usr/bin/tool").read_bytes() == b"#!\n"
    assert stat.S_IMODE((root / "usr/bin/tool").stat().st_mode) == 0o755


def test_a_hard_link_to_a_file_outside_is_refused(root: Path, tmp_path: Path) -> None:
    op = files_op(tmp_path, "b.tar", Entry("etc/shadow", tarfile.LNKTYPE, link="../outside"))
    with pytest.raises(UsageError, match="hard link"):
        run(root, recipe(tmp_path, op))
    assert not (root / "etc/shadow").exists()


@pytest.mark.parametrize("member", ["run/x", "proc/x", "sys/x", "dev/x", "boot/x", ".ash/x"])
def test_members_in_the_places_a_recipe_never_touches_are_refused(
    root: Path, tmp_path: Path, member: str
) -> None:
    first = files_op(tmp_path, "1.tar", Entry("etc/first", data=b"1"))
    bad = files_op(tmp_path, "2.tar", Entry(member, data=b"x"))
    with pytest.raises(UsageError, match="never touches"):
        run(root, recipe(tmp_path, first, bad))
    assert not (root / "etc/first").exists()  # checked whole before the first operation


@pytest.mark.parametrize("member", ["/etc/abs", "../escape", "etc/../../escape", ""])
def test_members_that_are_not_plain_paths_are_refused(
    root: Path, tmp_path: Path, member: str
) -> None:
    with pytest.raises(UsageError):
        run(root, recipe(tmp_path, files_op(tmp_path, "b.tar", Entry(member, data=b"x"))))


def test_a_folder_symlink_to_boot_is_refused_where_it_resolves(root: Path, tmp_path: Path) -> None:
    (root / "etc/kernels").symlink_to("../boot")
    op = files_op(tmp_path, "b.tar", Entry("etc/kernels/vmlinuz", data=b"x"))
    with pytest.raises(UsageError, match="never touches"):
        run(root, recipe(tmp_path, op))
    assert list((root / "boot").iterdir()) == []


# -- removals -------------------------------------------------------------------------------
@pytest.mark.parametrize("removed", ["etc", "dev/null", "dev", "run/x", "boot/grub", ".ash/x"])
def test_removing_a_top_level_folder_or_a_kept_out_place_is_refused(
    root: Path, tmp_path: Path, removed: str
) -> None:
    op = files_op(tmp_path, "b.tar", Entry("etc/new", data=b"x"), remove=(removed,))
    with pytest.raises(UsageError):
        run(root, recipe(tmp_path, op))
    assert (root / "etc/keep/file").read_text() == "kept\n"
    assert (root / "dev/null").exists() and not (root / "etc/new").exists()


def test_a_removal_through_a_symlink_to_the_top_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "etc/top").symlink_to("/")
    op = files_op(tmp_path, "b.tar", Entry("etc/new", data=b"x"), remove=("etc/top/usr",))
    with pytest.raises(UsageError, match="top-level"):
        run(root, recipe(tmp_path, op))
    assert (root / "usr/bin").is_dir()


def test_a_removal_through_a_symlink_out_of_the_root_removes_nothing_outside(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "host-folder"
    (outside / "victim").mkdir(parents=True)
    (root / "etc/out").symlink_to(outside)
    op = files_op(tmp_path, "b.tar", Entry("etc/new", data=b"x"), remove=("etc/out/victim",))
    run(root, recipe(tmp_path, op))
    assert (outside / "victim").is_dir()


def test_a_removal_takes_a_folder_with_all_it_holds(root: Path, tmp_path: Path) -> None:
    (root / "etc/keep/deep/er").mkdir(parents=True)
    (root / "etc/keep/deep/er/f").write_text("x")
    (root / "etc/keep/link").symlink_to("/etc")
    op = files_op(
        tmp_path,
        "b.tar",
        Entry("etc/keep", data=b"now a file\n"),
        remove=("etc/keep/deep", "etc/keep/file", "etc/keep/link"),
    )
    run(root, recipe(tmp_path, op))
    assert (root / "etc/keep").read_bytes() == b"now a file\n"


# -- the recipe is checked whole, one line, nothing done -------------------------------------
def bad_recipes(folder: Path) -> dict[str, tuple[str, str]]:
    """Recipes whose second operation is bad; the first would write etc/first."""
    good = files_op(folder, "good.tar", Entry("etc/first", data=b"1"))
    digest = bundle(folder / "other.tar", Entry("etc/x", data=b"x"))
    bundle(folder / "other.tar", Entry("etc/x", data=b"changed"))
    mismatch = f'\n[[operation]]\nname = "d"\nfiles = "other.tar"\nsha256 = "{digest}"\n'
    return {
        "empty command": (good + '\n[[operation]]\nname = "x"\ncommand = []\n', "non-empty"),
        "a shell": (good + '\n[[operation]]\ncommand = ["sh", "-c", "id"]\n', "package manager"),
        "unknown key": (
            good + '\n[[operation]]\ncommand = ["apt-get", "install", "x"]\nshell = true\n',
            "unknown key",
        ),
        "unknown top key": ('hook = "x"\n' + good, "unknown key"),
        "malformed": (good + "\n[[operation]\n", "not TOML"),
        "digest": (good + mismatch, "does not match its digest"),
        "no digest": (good + mismatch.replace(f'sha256 = "{digest}"\n', ""), "sha256"),
        "missing bundle": (good + mismatch.replace("other.tar", "gone.tar"), "cannot read"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty command",
        "a shell",
        "unknown key",
        "unknown top key",
        "malformed",
        "digest",
        "no digest",
        "missing bundle",
    ],
)
def test_a_bad_recipe_is_one_line_and_nothing_is_done(
    root: Path, tmp_path: Path, case: str
) -> None:
    text, words = bad_recipes(tmp_path)[case]
    with pytest.raises(UsageError, match=words) as e:
        run(root, recipe(tmp_path, text))
    assert "\n" not in str(e.value)
    assert not (root / "etc/first").exists()


def test_a_recipe_that_is_not_utf8_is_a_usage_error(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_bytes(b'version = 2\nbase = "b\xff\xfe"\n')
    with pytest.raises(UsageError, match="not UTF-8"):
        run(root, str(path))


def test_a_recipe_of_an_older_version_is_refused(root: Path, tmp_path: Path) -> None:
    """Version 1 carried no digests: its bundles cannot be checked."""
    with pytest.raises(UsageError, match="export it again"):
        run(root, recipe(tmp_path, head='version = 1\nbase = "base"\n'))


# -- dry run --------------------------------------------------------------------------------
def test_dry_run_lists_commands_writes_and_removals_and_does_nothing(
    root: Path, tmp_path: Path
) -> None:
    command = (
        '\n[[operation]]\nname = "apt-get install htop"\ncommand = ["apt-get", "install", "htop"]\n'
    )
    op = files_op(
        tmp_path,
        "b.tar",
        Entry("etc/motd", data=b"hello\n"),
        Entry("usr/bin/su2", data=b"x", mode=0o4755),
        Entry("usr/bin/grp", data=b"x", mode=0o2755),
        Entry("var/lib/console", tarfile.CHRTYPE, mode=0o666, device=(5, 1)),
        Entry("var/lib/disk", tarfile.BLKTYPE, mode=0o660, device=(8, 0)),
        Entry(
            "usr/bin/ping2", data=b"x", mode=0o755, pax={"SCHILY.xattr.security.capability": "\x01"}
        ),
        Entry("etc/alias", tarfile.SYMTYPE, link="motd"),
        remove=("etc/keep/file",),
    )
    said = "\n".join(run(root, recipe(tmp_path, command, op), dry_run=True))
    assert "run apt-get -y install htop" in said, said
    assert "write /etc/motd (file, 6 bytes, mode 0644" in said, said
    assert "/usr/bin/su2 (file, 1 bytes, mode 4755" in said and "SETUID" in said, said
    assert "/usr/bin/grp (file, 1 bytes, mode 2755" in said and "SETGID" in said, said
    assert "/var/lib/console (character device 5,1, mode 0666" in said, said
    assert "/var/lib/disk (block device 8,0" in said and said.count("DEVICE NODE") == 2, said
    assert "FILE CAPABILITIES" in said and "symlink to motd" in said, said
    assert "remove /etc/keep/file" in said, said
    assert f"owner {os.getuid()}:{os.getgid()}" in said
    assert (root / "etc/keep/file").exists() and not (root / "etc/motd").exists()
    assert sorted(p.name for p in root.iterdir()) == ["boot", "dev", "etc", "run", "usr", "var"]


def test_a_bundle_writes_owner_mode_links_and_times(root: Path, tmp_path: Path) -> None:
    op = files_op(
        tmp_path,
        "b.tar",
        Entry("opt/app", tarfile.DIRTYPE, mode=0o750),
        Entry("opt/app/run.sh", data=b"#!/bin/sh\n", mode=0o700),
        Entry("opt/app/same", tarfile.LNKTYPE, link="opt/app/run.sh"),
        Entry("opt/app/alias", tarfile.SYMTYPE, link="/opt/app/run.sh"),
        Entry("etc/keep/file", data=b"replaced\n", mode=0o600),
    )
    run(root, recipe(tmp_path, op))
    app = root / "opt/app"
    assert stat.S_IMODE(app.stat().st_mode) == 0o750
    assert (app / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert (app / "same").stat().st_ino == (app / "run.sh").stat().st_ino
    assert os.readlink(app / "alias") == "/opt/app/run.sh"
    assert (root / "etc/keep/file").read_text() == "replaced\n"
    assert [p.name for p in app.iterdir() if p.name.startswith(".ash")] == []


# -- export's outputs -----------------------------------------------------------------------
def test_an_output_behind_a_planted_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "root-only"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "recipe.toml").symlink_to(victim)
    with pytest.raises(UsageError, match="symlink"):
        write_new_file(str(shared / "recipe.toml"), lambda fd: write_all(fd, b"x"))
    assert victim.read_text() == "secret\n"
    assert [p.name for p in shared.iterdir()] == ["recipe.toml"]


def test_an_output_replaces_a_file_by_its_name_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "root-only"
    victim.write_text("secret\n")
    (tmp_path / "recipe.toml").hardlink_to(victim)
    write_new_file(str(tmp_path / "recipe.toml"), lambda fd: write_all(fd, b"new\n"), mode=0o600)
    assert victim.read_text() == "secret\n"
    assert (tmp_path / "recipe.toml").read_text() == "new\n"
    assert stat.S_IMODE((tmp_path / "recipe.toml").stat().st_mode) == 0o600


# -- labels --------------------------------------------------------------------------------
def test_a_recipes_labels_are_read_and_shown(root: Path, tmp_path: Path) -> None:
    op = (
        '\n[[operation]]\nname = "i"\nlabels = ["mail", "web.v2"]\n'
        'command = ["apt-get", "install", "x"]\n'
    )
    said = run(root, recipe(tmp_path, op), dry_run=True)
    assert "      label the layer it makes mail, web.v2" in said, said


@pytest.mark.parametrize("labels", ['"mail"', '["12"]', '["a..b"]', "[1]", '["a b"]'])
def test_a_recipe_with_bad_labels_is_refused_in_one_line(
    root: Path, tmp_path: Path, labels: str
) -> None:
    op = f'\n[[operation]]\nname = "i"\nlabels = {labels}\ncommand = ["apt-get", "install", "x"]\n'
    with pytest.raises(UsageError) as raised:
        run(root, recipe(tmp_path, op), dry_run=True)
    assert "operation 1" in str(raised.value) and "\n" not in str(raised.value)
