"""The installer face writes the alpm hooks into a root (a temp dir here: no root needed)."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

from ashplugins.pacman import install

PRE = "etc/pacman.d/hooks/00-ashlayers-pre.hook"
POST = "etc/pacman.d/hooks/zz-ashlayers-post.hook"
TOML = "etc/ash/hooks.d/pacman.toml"
LAUNCHER = "usr/libexec/ashlayers/pacman-hook"


def _fake_pacman_root(root: Path, conf: str = "[options]\n") -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/pacman").write_text("")
    (root / "etc").mkdir()
    (root / "etc/pacman.conf").write_text(conf)
    return root


def _sections(text: str) -> dict[str, list[str]]:
    """An alpm .hook file as {section: [lines]} (comments and blanks left out)."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line
            sections.setdefault(current, [])
        else:
            sections[current].append(line)
    return sections


def test_detect(tmp_path: Path) -> None:
    assert not install.detect(str(tmp_path))
    assert install.detect(str(_fake_pacman_root(tmp_path)))


def test_install_writes_the_hooks_and_a_commented_config(tmp_path: Path) -> None:
    root = _fake_pacman_root(tmp_path)
    written = install.install(str(root))
    assert written == ["/" + LAUNCHER, "/" + PRE, "/" + POST, "/" + TOML]
    for rel in (PRE, POST, TOML):
        mode = (root / rel).stat().st_mode
        assert stat.S_IMODE(mode) == 0o644, rel
    assert stat.S_IMODE((root / LAUNCHER).stat().st_mode) == 0o755
    config = (root / TOML).read_text()
    assert all(not line or line.startswith("#") for line in config.splitlines())


def test_install_is_idempotent_and_keeps_the_users_config(tmp_path: Path) -> None:
    root = _fake_pacman_root(tmp_path)
    install.install(str(root))
    (root / TOML).write_text("enabled = false\n")
    assert install.install(str(root)) == []
    assert (root / TOML).read_text() == "enabled = false\n"
    (root / PRE).write_text("old\n")
    (root / LAUNCHER).chmod(0o644)
    assert install.install(str(root)) == ["/" + LAUNCHER, "/" + PRE]


def test_install_honours_the_hookdir_of_pacman_conf(tmp_path: Path) -> None:
    root = _fake_pacman_root(tmp_path, "[options]\nHookDir = /srv/hooks/\n")
    written = install.install(str(root))
    assert written[1:3] == ["/srv/hooks/00-ashlayers-pre.hook", "/srv/hooks/zz-ashlayers-post.hook"]
    assert (root / "srv/hooks/00-ashlayers-pre.hook").is_file()


def test_uninstall_removes_the_hooks_only(tmp_path: Path) -> None:
    root = _fake_pacman_root(tmp_path)
    install.install(str(root))
    assert install.uninstall(str(root)) == ["/" + PRE, "/" + POST, "/" + LAUNCHER]
    assert not (root / PRE).exists() and not (root / POST).exists()
    assert not (root / LAUNCHER).exists()
    assert (root / TOML).exists()
    assert install.uninstall(str(root)) == []


def test_the_hook_files_as_alpm_reads_them(tmp_path: Path) -> None:
    root = _fake_pacman_root(tmp_path)
    install.install(str(root))
    pre = _sections((root / PRE).read_text())
    post = _sections((root / POST).read_text())
    for hook in (pre, post):
        assert set(hook) == {"[Trigger]", "[Action]"}
        trigger = hook["[Trigger]"]
        ops = {line.split("=")[1].strip() for line in trigger if line.startswith("Operation")}
        assert ops == {"Install", "Upgrade", "Remove"}
        assert "Type = Package" in trigger and "Target = *" in trigger
    assert "When = PreTransaction" in pre["[Action]"]
    assert "When = PostTransaction" in post["[Action]"]
    for hook, phase in ((pre, "pre"), (post, "post")):
        (exec_line,) = [line for line in hook["[Action]"] if line.startswith("Exec = ")]
        argv = shlex.split(exec_line.removeprefix("Exec = "))  # alpm splits words alike
        assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3
        assert f"then exec /{LAUNCHER} {phase};" in argv[2]
        if phase == "post":  # the helper first, without the launcher's shell
            assert argv[2].startswith(
                "{ [ -x /usr/libexec/ashlayers/ash-commit ] && "
                "/usr/libexec/ashlayers/ash-commit /.ash; } || "
            )
    assert {"AbortOnFail", "NeedsTargets"} <= set(pre["[Action]"])
    assert "AbortOnFail" not in post["[Action]"]  # alpm allows it for PreTransaction only
    # alpm runs hooks in the order of their file names: ours first before, last after.
    names = sorted([*os.listdir(root / "etc/pacman.d/hooks"), "50-other.hook"])
    assert names[0] == "00-ashlayers-pre.hook" and names[-1] == "zz-ashlayers-post.hook"


def _launch(root: Path, phase: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(root / LAUNCHER), phase],
        env={"PATH": "/usr/bin:/bin", **env},
        input="",
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_launcher_skips_without_python_for_ash_skip(tmp_path: Path) -> None:
    root = _fake_pacman_root(tmp_path)
    install.install(str(root))
    pre = _launch(root, "pre", {"ASH_SKIP": "1"})
    assert (pre.returncode, pre.stdout) == (
        0,
        "ashlayers: ASH_SKIP is set: no layer for this run\n",
    )
    post = _launch(root, "post", {"ASH_SKIP": "yes"})
    assert (post.returncode, post.stdout) == (0, "")


def test_a_leftover_launcher_does_nothing_when_ashlayers_is_gone(tmp_path: Path) -> None:
    """The launcher's Python part where ashlayers cannot be imported: exit 0, so that a hook
    left behind by an uninstall never stops pacman (AbortOnFail)."""
    root = _fake_pacman_root(tmp_path)
    install.install(str(root))
    script = (root / LAUNCHER).read_text()
    code = script.split("-c '", 1)[1].rsplit('\' "$phase"', 1)[0]
    no_site = "import sys, types; sys.modules['site'] = types.SimpleNamespace(main=lambda: None)\n"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", no_site + code, "pre"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stderr) == (0, "")
