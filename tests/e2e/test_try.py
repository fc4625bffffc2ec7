"""`ashctl try` works in a new deployment without touching the running root; `deploy` makes
it the root; `remove` of a try's layer drops the try. ashctl runs from the host (`--root`)."""

from __future__ import annotations

import pytest

from tests.e2e.root import Root
from tests.e2e.test_apt import layers
from tests.e2e.test_replay import host_ashctl, installed

pytestmark = pytest.mark.e2e


def test_try_then_deploy(root: Root) -> None:
    start = installed(root)
    head = root.ashctl_json("status")["layer"]
    out = host_ashctl(root, "try", "--", "apt-get", "install", "-y", "ashtest-b")
    assert out.returncode == 0, (out.stdout, out.stderr)
    made = layers(root)[-1]
    assert made["name"] == "apt-get install ashtest-b" and made["parent"] == head, made
    assert f"tried: layer {made['id']}" in out.stderr, out.stderr
    # The running root is untouched: no package, same layer, no drift.
    assert installed(root) == start
    status = root.ashctl_json("status")
    assert status["layer"] == head and status["drift"] is False, status
    tries = [p.name for p in (root.path / ".ash/deployments").iterdir()]
    assert len(tries) == 1 and "-try-" in tries[0], tries
    assert status["tries"] == [{"deployment": tries[0], "layer": made["id"]}], status
    said = root.ashctl("status").stdout  # and in plain words, with what to do next
    waiting = f"try {tries[0]}: waits with layer {made['id']} (`ashctl deploy {made['id']}`"
    assert waiting in said, said
    doctor = root.ashctl("doctor")
    assert doctor.returncode == 0, doctor  # a try is no leftover, but it is named
    assert f"try {tries[0]} waits with layer {made['id']}" in doctor.stdout, doctor.stdout
    done = host_ashctl(root, "deploy", str(made["id"]))
    assert done.returncode == 0 and "takes effect now" in done.stdout, (done.stdout, done.stderr)
    assert installed(root)["dpkg"] - start["dpkg"] == {"ashtest-a", "ashtest-b"}
    assert root.ashctl_json("status")["layer"] == made["id"]
    assert "try " not in root.ashctl("status").stdout  # deployed: no longer waiting
    # The next operation goes on from there, in place.
    root.run(["apt-get", "install", "-y", "ashtest-v"])
    assert layers(root)[-1]["parent"] == made["id"]


def test_a_try_not_deployed_is_removed_with_its_layer(root: Root) -> None:
    out = host_ashctl(root, "try", "--label", "web", "--", "dnf5", "install", "-y", "ashtest-v")
    assert out.returncode == 0, (out.stdout, out.stderr)
    made = layers(root)[-1]
    assert made["labels"] == ["web"] and f"labelled layer {made['id']} web" in out.stderr
    taken = host_ashctl(root, "try", "--label", "web", "--", "touch", "/etc/x")
    assert taken.returncode == 2 and "is on layer" in taken.stderr, taken.stderr
    assert len(list((root.path / ".ash/deployments").iterdir())) == 1  # refused before any
    gone = host_ashctl(root, "remove", "web")  # the label names it
    assert gone.returncode == 0, (gone.stdout, gone.stderr)
    assert "removed the try" in gone.stdout
    assert not list((root.path / ".ash/deployments").iterdir())
    assert made["id"] not in [x["id"] for x in layers(root)]
    assert root.ashctl_json("label") == {}  # gone with its layer
    nothing = host_ashctl(root, "try", "--", "true")
    assert nothing.returncode == 0 and "nothing changed" in nothing.stderr, nothing.stderr
    assert not list((root.path / ".ash/deployments").iterdir())
    assert root.ashctl("doctor").returncode == 0
