"""What a replayed step's failure shows (ashcore/replay.py `failure`): the real cause."""

from __future__ import annotations

from ashcore.replay import failure

APT_HOOK_FAILED = """\
Reading package lists...
ashlayers: cannot make a layer: btrfs send of /.ash/layers/probe.41 failed: ERROR: failed \
to determine mount point for /.ash/layers/probe.41: No such file or directory. Stopped \
before any change; run again with ASH_SKIP=1 to go on without a layer
E: Sub-process /usr/libexec/ashlayers/apt-hook returned an error code (1)
E: Failure running script /usr/libexec/ashlayers/apt-hook pre
"""


def test_the_hooks_own_error_is_the_cause_not_the_managers_last_line() -> None:
    said, hint = failure("", APT_HOOK_FAILED)
    assert said.startswith("the layer could not be made: btrfs send of /.ash/layers/probe.41")
    assert "failed to determine mount point" in said and "ASH_SKIP" not in said
    assert "repositories" not in hint


def test_a_package_gone_is_named_only_when_the_manager_says_so() -> None:
    said, hint = failure("", "E: Unable to locate package ashtest-z\n")
    assert said == "E: Unable to locate package ashtest-z" and "gone" in hint
    said, hint = failure("", "error: target not found: ashtest-a\n")
    assert said == "error: target not found: ashtest-a" and "gone" in hint
    said, hint = failure("done\n", "E: dpkg was interrupted\n")
    assert said == "E: dpkg was interrupted" and "repositories" not in hint
    assert failure("", "")[0] == "no message"
    assert failure("only on stdout\n", "")[0] == "only on stdout"


def test_a_squashed_layer_is_replaced_as_a_whole() -> None:
    from ashcore.model import Layer, Status
    from ashcore.replay import Outcome, _regroup
    from ashcore.steps import Step

    def layer(i: int) -> Layer:
        return Layer(i, f"l{i}", i - 1, None, f"c{i}", Status.COMMITTED, "now")

    whole, other, gone = layer(9), layer(5), layer(11)
    steps = [
        Step(layer(2), None, stands_for=whole),
        Step(layer(3), None, stands_for=whole),
        Step(other, None),
    ]
    steps += [Step(layer(7), None, stands_for=gone), Step(layer(8), None, stands_for=gone)]
    outcome = Outcome()
    outcome.made = [(layer(2), 20), (layer(3), 21), (other, 22)]
    outcome.dissolved = [(layer(7), "nothing"), (layer(8), "nothing")]
    _regroup(outcome, steps)
    assert [(old.id, new) for old, new in outcome.made] == [(9, 21), (5, 22)]
    assert [(old.id, why) for old, why in outcome.dissolved] == [(11, "nothing")]


def test_a_runs_deltas_fold_into_one() -> None:
    from ashcore.model import Layer, PackageDelta, Status
    from ashcore.squash import _folded

    def layer(delta: PackageDelta) -> Layer:
        return Layer(2, "x", 1, None, "x", Status.COMMITTED, "now", packages=delta)

    run = [
        layer(PackageDelta(added=(("a", "1"), ("b", "1")), removed=(("old", "3"),))),
        layer(PackageDelta(removed=(("b", "1"),), upgraded=(("a", "1", "2"), ("c", "1", "2")))),
        layer(PackageDelta(removed=(("d", "1"),))),
        layer(PackageDelta(added=(("d", "2"),))),
    ]
    folded = _folded(run)
    assert folded.added == (("a", "2"),)  # added then upgraded: added at its last version
    assert folded.removed == (("old", "3"),)  # b: added then removed, neither
    assert folded.upgraded == (("c", "1", "2"), ("d", "1", "2"))  # d: removed, then back
