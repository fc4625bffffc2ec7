"""Bad input gets one clear line and loses nothing."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.btrfs.conftest import Image, destroy_image, make_image

pytestmark = pytest.mark.btrfs


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ashctl: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("on_error = [", "is not valid TOML"),
        ('on_error = "explode"', 'on_error must be "abort" or "warn"'),
        ("colour = 1", "unknown setting 'colour'"),
        ('store = "relative"', "store must be an absolute path"),
        ("noise = [1]", "'noise' must be a list of strings"),
    ],
)
def test_malformed_config_is_refused_in_one_line(ready: Image, text: str, expected: str) -> None:
    (ready.root / "etc/ash/ash.toml").write_text(text)
    line = one_line_error(ready.ashctl("list"), 1)
    assert expected in line
    assert "ash.toml" in line


@pytest.mark.parametrize("unsafe", ["group-writable", "not-root"])
def test_unsafe_config_is_refused(ready: Image, unsafe: str) -> None:
    config = ready.root / "etc/ash/hooks.d/run.toml"
    config.write_text("enabled = false\n")
    if unsafe == "group-writable":
        config.chmod(0o664)
        hint = "chmod go-w"
    else:
        os.chown(config, 1000, 1000)
        hint = "chown root:root"
    line = one_line_error(ready.ashctl("run", "--", "touch", str(ready.root / "etc/refused")), 1)
    assert f"refusing {config}" in line and hint in line
    assert len(ready.json("list")) == 1  # type: ignore[arg-type]


def test_hook_config_opts_a_plugin_out(ready: Image) -> None:
    (ready.root / "etc/ash/hooks.d/run.toml").write_text("enabled = false\n")
    ready.ashctl("run", "--", "touch", str(ready.root / "etc/opted-out"), check=True)
    assert len(ready.json("list")) == 1  # type: ignore[arg-type]


def test_ash_skip_opts_one_run_out(ready: Image) -> None:
    ready.ashctl(
        "run", "--", "touch", str(ready.root / "etc/skipped"), check=True, env={"ASH_SKIP": "1"}
    )
    assert len(ready.json("list")) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("ref", ["99", "no-such-layer", "../../etc"])
def test_unknown_layers(ready: Image, ref: str) -> None:
    for command in (["show", ref], ["rollback", ref], ["pin", ref], ["diff", ref]):
        line = one_line_error(ready.ashctl(*command), 1)
        assert "no layer" in line


@pytest.mark.parametrize(
    "name, code, expected",
    [
        ("a\nb", 2, "newline"),
        ("x" * 10240, 2, "10240 characters"),
        ("42", 2, "cannot be a number"),
        ("  ", 2, "empty"),
    ],
)
def test_bad_names_are_refused(ready: Image, name: str, code: int, expected: str) -> None:
    line = one_line_error(
        ready.ashctl("run", "--name", name, "--", "touch", str(ready.root / "etc/refused")), code
    )
    assert expected in line
    assert len(ready.json("list")) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["with/slash", "../../../etc/passwd", ".."])
def test_names_are_never_paths(ready: Image, name: str) -> None:
    ready.ashctl("run", "--name", name, "--", "touch", str(ready.root / "etc/named"), check=True)
    layer = ready.json("list")[-1]  # type: ignore[index]
    assert layer["name"] == name
    assert (ready.root / f".ash/layers/{layer['id']}").is_dir()
    assert sorted(p.name for p in (ready.root / ".ash/layers").iterdir()) == [
        "1",
        "1.json",
        "2",
        "2.changes",  # its change list (ashcore/changes.py), named by its id too
        "2.json",
    ]
    assert ready.json("show", name)["id"] == 2  # type: ignore[index]


def test_usage_errors_exit_2(ready: Image) -> None:
    one_line_error(ready.ashctl("frobnicate"), 2)
    one_line_error(ready.ashctl("run"), 2)
    one_line_error(ready.ashctl("prune", "--keep", "-1"), 2)


def test_a_full_filesystem_is_reported_and_loses_nothing(tmp_path: object) -> None:
    from pathlib import Path

    img = make_image(Path(str(tmp_path)), size="256M")
    try:
        img.ashctl("setup", check=True)
        img.ashctl(
            "run", "--name", "before", "--", "touch", str(img.root / "etc/before"), check=True
        )
        filler = img.root / "filler"
        dd = subprocess.run(
            ["dd", "if=/dev/urandom", f"of={filler}", "bs=1M", "count=400"],
            capture_output=True,
            text=True,
        )
        assert "No space left on device" in dd.stderr  # the filesystem is full indeed
        subprocess.run(["sync"])
        results = [
            img.ashctl(
                "run",
                "--name",
                f"full{i}",
                "--",
                "sh",
                "-c",
                f"head -c 8M /dev/urandom > {img.root}/more{i} || true",
            )
            for i in range(3)
        ]
        for r in results:
            assert "Traceback" not in r.stderr
            if r.returncode != 0:
                assert len(r.stderr.strip().splitlines()) == 1
                assert "no space left" in r.stderr
        # The runs met ENOSPC (here all three: the probe snapshot needs space) and said so.
        assert any(r.returncode == 1 and "no space left" in r.stderr for r in results)
        filler.unlink()
        subprocess.run(["sync"])
        assert img.ashctl("doctor").returncode == 0
        img.ashctl("run", "--name", "after", "--", "touch", str(img.root / "etc/after"), check=True)
        names = [x["name"] for x in img.json("list")]  # type: ignore[union-attr]
        assert names[:2] == ["base", "before"] and names[-1] == "after"
    finally:
        destroy_image(img)


def _fill(img: Image) -> None:
    """Fill the filesystem to the last block, with the database's WAL folded in and its
    files gone (as after the last connection closes): opening it must make them anew."""
    import sqlite3

    db = sqlite3.connect(img.root / ".ash/ash.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    db.close()
    for suffix in ("-wal", "-shm"):
        (img.root / f".ash/ash.db{suffix}").unlink(missing_ok=True)
    subprocess.run(
        ["dd", "if=/dev/urandom", f"of={img.root}/filler", "bs=1M", "count=400"],
        capture_output=True,
    )
    for n in range(64):  # the last blocks, a few at a time
        subprocess.run(
            ["dd", "if=/dev/urandom", f"of={img.root}/small{n}", "bs=4k", "count=16"],
            capture_output=True,
        )
    subprocess.run(["sync"])
    st = os.statvfs(img.root)
    assert st.f_bavail * st.f_frsize < 1 << 20  # full indeed


def test_a_full_filesystem_leaves_reading_and_prune_working(tmp_path: object) -> None:
    """With the filesystem full, every command stopped (SQLite could not open the database)
    though the error said to run prune: reading commands and prune work, and a try refuses
    in one line before it makes or mounts anything."""
    from pathlib import Path

    from tests.btrfs.conftest import mounted_below

    img = make_image(Path(str(tmp_path)), size="256M")
    try:
        img.ashctl("setup", check=True)
        for i in range(3):
            with open(img.root / f"etc/data{i}", "wb") as f:
                f.write(os.urandom(20 << 20))
            touch = ["touch", str(img.root / f"etc/k{i}")]
            img.ashctl("run", "--name", f"keep{i}", "--", *touch, check=True)
        for i in range(3):
            (img.root / f"etc/data{i}").unlink()
        img.ashctl("run", "--name", "clean", "--", "touch", str(img.root / "etc/clean"), check=True)
        _fill(img)
        mounts = sorted(mounted_below(img.dir))
        tries = sorted(os.listdir(img.root / ".ash/deployments"))

        for command in (["status"], ["list"], ["tree"], ["doctor"], ["doctor", "--repair"]):
            result = img.ashctl(*command)
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            assert "no space" not in result.stdout + result.stderr, (command, result)
        assert "store is consistent" in img.ashctl("doctor").stdout

        result = img.ashctl("try", "--", "true")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "free on" in result.stderr and "a try needs at least" in result.stderr
        assert sorted(mounted_below(img.dir)) == mounts
        assert sorted(os.listdir(img.root / ".ash/deployments")) == tries

        assert img.ashctl("prune", "--keep", "20", check=True).stdout == "nothing to prune\n"
        names = [x["name"] for x in img.json("list")]  # type: ignore[union-attr]
        result = img.ashctl("prune", "--keep", "1")
        assert result.returncode == 0, (result.stdout, result.stderr)
        after = img.json("list")
        assert [x["name"] for x in after] == names  # type: ignore[union-attr]  # records stay
        statuses = {x["name"]: x["status"] for x in after}  # type: ignore[union-attr]
        assert statuses["keep0"] == "pruned" and statuses["clean"] == "committed", statuses
        st = os.statvfs(img.root)
        assert st.f_bavail * st.f_frsize > 32 << 20  # the snapshots' space came back
        assert img.ashctl("doctor").stdout.startswith("store is consistent")
        img.ashctl("run", "--name", "after", "--", "touch", str(img.root / "etc/after"), check=True)
    finally:
        destroy_image(img)
