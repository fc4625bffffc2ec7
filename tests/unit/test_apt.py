"""The apt plugin without a root: names, targets, dpkg states, the installer, the guard."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ashplugins.apt import install
from ashplugins.apt.command import (
    dpkg_targets,
    layer_name,
    parse_cmdline,
    pre_install_targets,
)
from ashplugins.apt.database import (
    AptDatabase,
    Entry,
    decode,
    encode,
    entry_of,
    installed_set,
    unfinished,
)
from ashplugins.apt.hook import main

FILES = Path(install.__file__).parent / "files"


# -- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["apt", "install", "htop"], "apt install htop"),
        (["/usr/bin/apt-get", "install", "-y", "htop"], "apt-get install htop"),
        (["apt-get", "remove", "--purge", "vim"], "apt-get remove --purge vim"),
        (["apt-get", "-qq", "-y", "-o", "Dpkg::Use-Pty=0", "install", "a"], "apt-get install a"),
        (["apt-get", "-qy", "-oAPT::X=1", "--option=A=b", "purge", "a"], "apt-get purge a"),
        (["apt-get", "install", "--allow-downgrades", "v=1.0"], "apt-get install v=1.0"),
        (["apt", "-t", "sid", "install", "a"], "apt -t sid install a"),
        (["apt-get", "-f", "install"], "apt-get -f install"),
        (["dpkg", "-i", "./foo.deb"], "dpkg -i ./foo.deb"),
        (["dpkg", "--force-depends", "-r", "foo"], "dpkg -r foo"),
        (["apt", "install", "--", "-y"], "apt install -- -y"),
        (
            ["python3", "/usr/local/bin/pyapt-install", "-y", "htop"],
            "python3 pyapt-install -y htop",
        ),
        (["/usr/bin/python3", "-c", "import apt; ..."], "python3 -c"),
        (["/usr/bin/python3", "/usr/bin/unattended-upgrade", "-v"], "unattended-upgrade -v"),
        ([], "apt"),
    ],
)
def test_layer_name_leaves_out_manners(argv: list[str], name: str) -> None:
    assert layer_name(argv) == name


def test_layer_name_is_one_printable_line_of_bounded_length() -> None:
    assert layer_name(["apt", "install", "a\nb"]) == "apt install a b"
    long = layer_name(["apt", "install", *(f"pkg{i}" for i in range(100))])
    assert len(long) == 200 and long.endswith("\u2026")


def test_parse_cmdline() -> None:
    assert parse_cmdline(b"apt-get\0install\0-y\0htop\0") == ("apt-get", "install", "-y", "htop")
    assert parse_cmdline(b"") == ()


# -- targets -------------------------------------------------------------------------------
def test_dpkg_targets_from_files_and_names() -> None:
    assert dpkg_targets(["dpkg", "-i", "./foo_1.0_all.deb", "/x/bar_2_amd64.deb"]) == [
        "foo",
        "bar",
    ]
    assert dpkg_targets(["dpkg", "--purge", "vim", "libc6:i386"]) == ["vim", "libc6"]
    assert dpkg_targets(["dpkg", "--configure", "-a"]) == []
    assert dpkg_targets(["dpkg", "--status-fd", "3", "--unpack", "a_1_all.deb"]) == ["a"]


PRE_INSTALL_V3 = """VERSION 3
APT::Architecture=amd64
DPkg::Tools::Options::x::Version=3

ashtest-a - - none < 1.0 all none /var/cache/apt/archives/ashtest-a_1.0_all.deb
ashtest-b - - none < 1.0 all none /var/cache/apt/archives/ashtest-b_1.0_all.deb
ashtest-a - - none < 1.0 all none **CONFIGURE**
vim 2:9.1 amd64 foreign > - - none **REMOVE**
"""


def test_pre_install_targets_v3() -> None:
    lines = PRE_INSTALL_V3.splitlines(keepends=True)
    assert pre_install_targets(lines) == ["ashtest-a", "ashtest-b", "vim"]


def test_pre_install_targets_v1_and_empty() -> None:
    assert pre_install_targets(["/var/cache/apt/archives/htop_3.3_amd64.deb\n"]) == ["htop"]
    assert pre_install_targets([]) == []


# -- dpkg states ---------------------------------------------------------------------------
def test_entry_of_keeps_installed_and_unfinished_packages() -> None:
    def stanza(status: str) -> dict[str, str]:
        return {"Package": "p", "Version": "1.0", "Architecture": "all", "Status": status}

    assert entry_of(stanza("install ok installed")) == Entry("p", "all", "1.0", "installed")
    assert entry_of(stanza("install ok half-configured")).state == "half-configured"  # type: ignore[union-attr]
    assert entry_of(stanza("install reinstreq half-installed")).state == "half-installed"  # type: ignore[union-attr]
    assert entry_of(stanza("deinstall ok config-files")) is None
    assert entry_of(stanza("purge ok not-installed")) is None
    assert entry_of(stanza("")) is None


def test_installed_set_encodes_unfinished_states_and_foreign_architectures() -> None:
    entries = [
        Entry("dpkg", "amd64", "1.22", "installed"),
        Entry("libc6", "amd64", "2.40", "installed"),
        Entry("libc6", "i386", "2.40", "installed"),
        Entry("doc", "all", "1", "triggers-pending"),
        Entry("bad", "all", "1.0", "half-configured"),
    ]
    assert installed_set(entries) == {
        "dpkg": "1.22",
        "libc6": "2.40",
        "libc6:i386": "2.40",
        "doc": "1",
        "bad": "1.0 (half-configured)",
    }


def test_encode_decode_round_trip() -> None:
    assert encode("1:2.0-1", "installed") == "1:2.0-1"
    assert encode("1.0", "unpacked") == "1.0 (unpacked)"
    assert decode("1.0 (unpacked)") == ("1.0", "unpacked")
    assert decode("1:2.0-1") == ("1:2.0-1", "installed")


def test_unfinished() -> None:
    installed = {
        "a": "1",
        "b": "1 (half-configured)",
        "c": "2 (unpacked)",
        "d:i386": "1 (unpacked)",
    }
    assert unfinished(installed) == ["b (half-configured)", "c (unpacked)", "d:i386 (unpacked)"]
    assert unfinished(installed, unpack_only=True) == ["b (half-configured)"]
    assert unfinished(installed, among=["c", "d"]) == ["c (unpacked)", "d:i386 (unpacked)"]
    assert unfinished(installed, among=["a"]) == []


STATUS = """Package: dpkg
Status: install ok installed
Architecture: amd64
Version: 1.22.21

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 3

Package: ashtest-fail
Status: install ok half-configured
Architecture: all
Version: 1.0

Package: libfoo
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2:1.0-1
"""


def test_read_installed_of_a_root_with_apt_pkg(tmp_path: Path) -> None:
    pytest.importorskip("apt_pkg", reason="python3-apt (apt_pkg) is not installed")
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(STATUS)
    db = AptDatabase()
    assert db.read_installed(str(tmp_path)) == {
        "dpkg": "1.22.21",
        "ashtest-fail": "1.0 (half-configured)",
        "libfoo:i386": "2:1.0-1",
    }
    assert AptDatabase().read_installed(str(tmp_path / "nothing")) == {}


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("1.0", "2.0", -1),
        ("1.0~rc1", "1.0", -1),
        ("1:0.9", "2.0", 1),
        ("1.0", "1.0", 0),
        ("1.0 (half-configured)", "1.0", -1),  # apt-get -f install finishes it: an upgrade
        ("1.0 (unpacked)", "1.0 (half-configured)", -1),
        ("2.0 (half-configured)", "1.0", 1),  # the version decides first
    ],
)
def test_compare_versions_by_dpkg_rules_then_state(a: str, b: str, sign: int) -> None:
    pytest.importorskip("apt_pkg", reason="python3-apt (apt_pkg) is not installed")
    db = AptDatabase()
    assert db.compare_versions(a, b) == sign
    assert db.compare_versions(b, a) == -sign


# -- installer -----------------------------------------------------------------------------
def _debian_root(path: Path) -> Path:
    (path / "usr/bin").mkdir(parents=True)
    (path / "usr/bin/dpkg").write_text("")
    (path / "var/lib/dpkg").mkdir(parents=True)
    (path / "etc/apt/apt.conf.d").mkdir(parents=True)
    return path


def test_detect(tmp_path: Path) -> None:
    assert not install.detect(str(tmp_path))
    assert install.detect(str(_debian_root(tmp_path)))


def test_install_writes_the_hook_files_once(tmp_path: Path) -> None:
    root = _debian_root(tmp_path)
    written = install.install(str(root))
    assert written == [
        "/usr/libexec/ashlayers/apt-hook",
        "/etc/apt/apt.conf.d/80ashlayers",
        "/etc/dpkg/dpkg.cfg.d/ashlayers",
        "/etc/ash/hooks.d/apt.toml",
    ]
    assert os.stat(root / "usr/libexec/ashlayers/apt-hook").st_mode & 0o777 == 0o755
    assert os.stat(root / "etc/apt/apt.conf.d/80ashlayers").st_mode & 0o777 == 0o644
    assert install.install(str(root)) == []  # idempotent


def test_install_keeps_the_users_settings_and_uninstall_removes_the_rest(tmp_path: Path) -> None:
    root = _debian_root(tmp_path)
    (root / "etc/ash/hooks.d").mkdir(parents=True)
    (root / "etc/ash/hooks.d/apt.toml").write_text("enabled = false\n")
    assert "/etc/ash/hooks.d/apt.toml" not in install.install(str(root))
    assert (root / "etc/ash/hooks.d/apt.toml").read_text() == "enabled = false\n"
    (root / "etc/apt/apt.conf.d/80ashlayers").write_text("// edited\n")
    assert install.install(str(root)) == ["/etc/apt/apt.conf.d/80ashlayers"]  # repaired
    assert install.uninstall(str(root)) == [
        "/usr/libexec/ashlayers/apt-hook",
        "/etc/apt/apt.conf.d/80ashlayers",
        "/etc/dpkg/dpkg.cfg.d/ashlayers",
    ]
    assert not (root / "usr/libexec/ashlayers").exists()
    assert (root / "etc/ash/hooks.d/apt.toml").exists()


def test_install_without_apt_writes_only_dpkgs_hook(tmp_path: Path) -> None:
    root = _debian_root(tmp_path)
    shutil.rmtree(root / "etc/apt")
    assert "/etc/apt/apt.conf.d/80ashlayers" not in install.install(str(root))
    assert (root / "etc/dpkg/dpkg.cfg.d/ashlayers").exists()


def test_the_apt_snippet_parses_and_asks_for_protocol_3() -> None:
    if shutil.which("apt-config") is None:
        pytest.skip("apt-config is not installed")
    snippet = FILES / "80ashlayers"
    dump = subprocess.run(
        ["apt-config", "-c", str(snippet), "dump"], capture_output=True, text=True, check=True
    ).stdout
    begin = "[ ! -x /usr/libexec/ashlayers/apt-hook ] || exec /usr/libexec/ashlayers/apt-hook begin"
    assert f'DPkg::Pre-Install-Pkgs:: "{begin}";' in dump
    assert re.search(r'DPkg::Tools::Options::\S+apt-hook%20begin::Version "3";', dump)
    assert "apt-hook commit" in dump


def test_the_dpkg_snippet_names_both_invoke_hooks() -> None:
    lines = (FILES / "dpkg.cfg").read_text().splitlines()
    hooks = [line.partition("=")[0] for line in lines if line and not line.startswith("#")]
    assert hooks == ["pre-invoke", "post-invoke"]


@pytest.mark.parametrize("phase", ["dpkg-begin", "dpkg-commit"])
def test_the_dpkg_hooks_start_nothing_under_a_front_end_that_holds_the_lock(
    phase: str, tmp_path: Path
) -> None:
    """dpkg runs each hook with `sh -c`; under apt (DPKG_FRONTEND_LOCKED) the line stops at
    its first test, and run alone it runs the hook script."""
    line = next(
        v
        for k, _, v in (x.partition("=") for x in (FILES / "dpkg.cfg").read_text().splitlines())
        if k == ("pre-invoke" if phase == "dpkg-begin" else "post-invoke")
    )
    hook = tmp_path / "apt-hook"
    hook.write_text(f'#!/bin/sh\necho "$1" > {tmp_path}/ran\n')
    hook.chmod(0o755)
    line = line.replace("/usr/libexec/ashlayers/apt-hook", str(hook))
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", "-c", line], env=env | {"DPKG_FRONTEND_LOCKED": "true"}, check=True)
    assert not (tmp_path / "ran").exists()
    subprocess.run(["sh", "-c", line], env=env, check=True)
    assert (tmp_path / "ran").read_text() == phase + "\n"


# -- the guard: a leftover hook does nothing -----------------------------------------------
def _guard_program() -> str:
    script = (FILES / "apt-hook").read_text()
    return script.split("-I -S -c '", 1)[1].split('\n\' "$phase"', 1)[0]


def test_a_leftover_hook_exits_0_when_ashlayers_is_gone(tmp_path: Path) -> None:
    python = shutil.which("python3", path="/usr/bin")
    assert python
    # -I: no user site, no PYTHONPATH; a bare interpreter in an empty dir has no ashplugins.
    probe = subprocess.run([python, "-I", "-c", "import ashplugins"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("ashlayers is installed for /usr/bin/python3 here")
    for phase in ("begin", "commit", "dpkg-begin", "dpkg-commit"):
        done = subprocess.run(
            [python, "-I", "-S", "-c", _guard_program(), phase],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert (done.returncode, done.stderr) == (0, "")


def test_the_hook_script_is_valid_sh() -> None:
    assert subprocess.run(["sh", "-n", str(FILES / "apt-hook")]).returncode == 0


def test_hook_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["bogus"]) == 2
    assert "usage:" in capsys.readouterr().err


# -- the manager's process -------------------------------------------------------------------
FIND_OWNERS = """
import os, sys
from ashplugins.apt.command import find_manager
me = os.getpid()
child = os.fork()
if child == 0:  # a fork that runs a hook (apt's Post-Invoke calls system() from one)
    os._exit(0 if find_manager(os.getpid()) == me else 1)
_, status = os.waitpid(child, 0)
print(find_manager(me) == me, os.waitstatus_to_exitcode(status) == 0)
"""


def test_the_manager_is_the_python_apt_script_not_the_program_that_started_it() -> None:
    """`python3 -c "subprocess.run(['python3', 'pyapt.py'])"`: the same name above is another
    program, not a fork of the script; a fork of the script (same image) is the script."""
    outer = (
        "import subprocess, sys;"
        f" sys.exit(subprocess.run([sys.executable, '-c', {FIND_OWNERS!r}]).returncode)"
    )
    done = subprocess.run([sys.executable, "-c", outer], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True"], done
