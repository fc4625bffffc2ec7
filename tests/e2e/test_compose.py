"""Compose and explain with the real managers: `blame` names the layer and, as each manager
answers (dpkg -S, rpm -qf, pacman -Qo), the package; a "mail" line (apt) is rebased onto a
"desktop" line (dnf5, pacman) made from the same base, labels leading the way."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.root import Root
from tests.e2e.test_apt import layers
from tests.e2e.test_replay import by_name, host_ashctl, installed

pytestmark = pytest.mark.e2e


def blamed(root: Root, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = root.ashctl_json("blame", path)["layers"]
    return found


def test_blame_names_the_layer_and_the_package_as_each_manager_says(root: Root) -> None:
    root.run(["apt-get", "install", "-y", "ashtest-b"])  # and ashtest-a, which it depends on
    root.run(["dnf5", "install", "-y", "ashtest-v"])
    # pacman's ashtest-a ships the file apt's does: --overwrite, as a user would.
    root.run(["pacman", "-S", "--noconfirm", "--overwrite", "*", "ashtest-a"])
    (root.path / "etc/hand-edit").write_text("mine\n")
    root.run(["apt-get", "remove", "-y", "ashtest-b"])
    apt = by_name(root, "apt-get install ashtest-b")["id"]
    dnf = by_name(root, "dnf5 install ashtest-v")["id"]
    pacman = by_name(root, "pacman -S --overwrite '*' ashtest-a")["id"]
    removal = by_name(root, "apt-get remove ashtest-b")["id"]
    drift = next(x["id"] for x in layers(root) if x["status"] == "drift")
    # The managers' own answers in the root, which blame must agree with.
    assert root.run(["dpkg", "-S", "/usr/share/ashtest/v"], check=False).returncode == 1
    assert root.run(["rpm", "-qf", "/usr/share/ashtest/v"]).stdout.startswith("ashtest-v-")
    assert "ashtest-a" in root.run(["pacman", "-Qo", "/usr/share/ashtest/a"]).stdout

    b = blamed(root, "/usr/share/ashtest/b")
    assert [x["id"] for x in b] == [removal, apt], b
    assert b[0]["removed"] is True and b[0]["owners"] == {"apt": ["ashtest-b"]}  # as it was
    assert b[1]["removed"] is False and b[1]["owners"] == {"apt": ["ashtest-b"]}
    v = blamed(root, "/usr/share/ashtest/v")
    assert [(x["id"], x["owners"]) for x in v] == [(dnf, {"dnf": ["ashtest-v"]})], v
    a = blamed(root, "/usr/share/ashtest/a")  # two managers own it: each says so
    assert [(x["id"], x["owners"]) for x in a] == [
        (pacman, {"apt": ["ashtest-a"], "pacman": ["ashtest-a"]}),
        (apt, {"apt": ["ashtest-a"]}),
    ], a
    edit = blamed(root, "/etc/hand-edit")
    assert [(x["id"], x["owners"]) for x in edit] == [(drift, {})], edit
    base = blamed(root, "/usr/bin/dpkg")  # the base's, owned by dpkg there
    assert base[-1]["base"] is True and base[-1]["owners"].get("apt") == ["dpkg"], base
    text = root.ashctl("blame", "/usr/share/ashtest/b").stdout
    assert "apt: ashtest-b" in text and "removed it" in text, text
    quick = root.ashctl_json("blame", "--no-owners", "/usr/share/ashtest/b")["layers"]
    assert [(x["id"], x["owners"]) for x in quick] == [(removal, {}), (apt, {})], quick


def test_a_mail_line_rebased_onto_a_desktop_line_has_both(root: Root) -> None:
    start = installed(root)
    root.run(["apt-get", "install", "-y", "ashtest-b"])
    (root.path / "etc/mail.conf").write_text("relay\n")
    back = host_ashctl(root, "rollback", "1")  # keeps the hand edit as the mail line's tip
    assert back.returncode == 0, back.stderr
    mail_first = by_name(root, "apt-get install ashtest-b")["id"]
    mail_tip = layers(root)[-1]
    assert mail_tip["status"] == "drift" and mail_tip["parent"] == mail_first, mail_tip
    assert host_ashctl(root, "label", str(mail_tip["id"]), "mail").returncode == 0
    root.run(["dnf5", "install", "-y", "ashtest-v"])
    root.run(["pacman", "-S", "--noconfirm", "--overwrite", "*", "ashtest-a"])
    root.ashctl("run", "--name", "desktop edit", "--", "sh", "-c", "echo dark > /etc/desk.conf")
    root.ashctl("label", str(layers(root)[-1]["id"]), "desktop")
    desktop = root.ashctl_json("status")["layer"]
    assert root.ashctl_json("status")["labels"] == ["desktop"]

    out = host_ashctl(root, "rebase", str(mail_first), "--onto", "desktop")
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "2 layers replayed" in out.stdout and "not deployed" in out.stdout, out.stdout
    tip = int(out.stdout.strip().splitlines()[-1].removeprefix("tip: layer "))
    assert root.ashctl_json("status")["layer"] == desktop  # the deployment stays
    assert not (root.path / "etc/mail.conf").exists()
    found = {x["id"]: x for x in layers(root)}
    assert found[tip]["labels"] == ["mail"] and found[mail_tip["id"]]["labels"] == []
    replayed = found[found[tip]["parent"]]
    assert replayed["name"] == "apt-get install ashtest-b" and replayed["parent"] == desktop
    assert found[mail_first]["replaced_by"] == replayed["id"]

    deployed = host_ashctl(root, "deploy", "mail")  # a label, wherever a LAYER is
    assert deployed.returncode == 0, deployed.stderr
    status = root.ashctl_json("status")
    assert status["layer"] == tip and status["labels"] == ["mail"], status
    now = installed(root)
    assert {m: now[m] - start[m] for m in now} == {
        "dpkg": {"ashtest-a", "ashtest-b"},  # b depends on a
        "rpm": {"ashtest-v"},
        "pacman": {"ashtest-a"},
    }
    assert (root.path / "etc/mail.conf").read_text() == "relay\n"
    assert (root.path / "etc/desk.conf").read_text() == "dark\n"
    edit = blamed(root, "/etc/mail.conf")
    assert [x["id"] for x in edit] == [tip], edit  # the replayed hand edit, on this line
    assert root.ashctl("doctor", check=False).returncode == 0


def test_squash_of_two_managers_layers_is_one_layer_that_exports_both_commands(
    root: Root, tmp_path: Any
) -> None:
    root.run(["apt-get", "install", "-y", "ashtest-b"])
    root.run(["dnf5", "install", "-y", "ashtest-v"])
    apt = by_name(root, "apt-get install ashtest-b")["id"]
    dnf = by_name(root, "dnf5 install ashtest-v")["id"]
    out = host_ashctl(root, "squash", str(apt), str(dnf), "--name", "tools")
    assert out.returncode == 0, (out.stdout, out.stderr)
    made = by_name(root, "tools")
    assert root.ashctl_json("status")["layer"] == made["id"] and made["parent"] == 1
    added = {p["name"] for p in made["packages"]["added"]}
    assert {"ashtest-a", "ashtest-b", "ashtest-v"} <= added, made["packages"]
    assert made["command"] == "apt-get install -y ashtest-b; dnf5 install -y ashtest-v"
    recipe = root.path / "tmp/recipe.toml"
    exported = root.ashctl("export", "tools", "-o", "/tmp/recipe.toml")
    assert exported.returncode == 0, exported.stderr
    text = recipe.read_text()
    assert 'command = ["apt-get", "install", "-y", "ashtest-b"]' in text, text
    assert 'command = ["dnf5", "install", "-y", "ashtest-v"]' in text, text
    # The next operation goes on from the squashed layer.
    root.run(["pacman", "-S", "--noconfirm", "--overwrite", "*", "ashtest-a"])
    assert layers(root)[-1]["parent"] == made["id"]
    assert root.ashctl("doctor", check=False).returncode == 0
