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
