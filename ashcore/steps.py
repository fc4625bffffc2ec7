"""The steps of a replay: which layers run again by their command, which are carried as their
file changes, which go together (a failed layer and the one that completed it; the parts of
a squash), and which would dissolve on a new base. Shared by replay, export and squash."""

from __future__ import annotations

import os
import shlex

from ashcore.errors import UsageError
from ashcore.lines import between, branch
from ashcore.model import Layer, PackageDelta, Status
from ashcore.pairs import Pair, completes, join
from ashcore.target import Target
from ashcore.text import escaped


class Step:
    """One layer to replay: by its command (`argv`) or by its file changes (`argv` None);
    with `pair`, the failed layer before it too, as one command (ashcore/pairs.py).
    `stands_for`: the squashed layer it is a part of (ashcore/squash.py)."""

    def __init__(
        self,
        layer: Layer,
        argv: list[str] | None,
        pair: Pair | None = None,
        stands_for: Layer | None = None,
    ) -> None:
        self.layer, self.argv, self.pair, self.stands_for = layer, argv, pair, stands_for

    @property
    def name(self) -> str:
        """The name of the layer the step makes."""
        return self.pair.name if self.pair is not None else self.layer.name

    @property
    def packages(self) -> PackageDelta:
        """What the step changed when it was made."""
        return self.pair.delta if self.pair is not None else self.layer.packages

    @property
    def layers(self) -> list[Layer]:
        """The old layers the step stands for."""
        return [self.pair.failed, self.layer] if self.pair is not None else [self.layer]

    def describe(self) -> str:
        what = shlex.join(self.argv) if self.argv else "its file changes"
        if self.pair is not None:
            failed = self.pair.failed
            return (
                f'layers {failed.id} "{escaped(failed.name)}" (failed) and {self.layer.id}'
                f' "{escaped(self.layer.name)}", as one: {what}'
            )
        return f'layer {self.layer.id} "{escaped(self.layer.name)}": {what}'


def replay_argv(layer: Layer) -> list[str] | None:
    """The command that replays a manager's layer, non-interactive; None for a layer that is
    replayed as its file changes (drift, `ashctl run`). UsageError when it cannot be
    replayed (a local package file, a script, a command line that is not a manager's)."""
    # A pruned layer's record is enough to run its command again (its snapshot is not).
    if layer.manager is None or layer.status not in (Status.COMMITTED, Status.PRUNED):
        if layer.manager is not None:
            raise UsageError(
                f'layer {layer.id} "{escaped(layer.name)}" is {layer.status.value}: a failed or'
                " cut operation cannot be replayed (a failed one only with the next layer, by"
                " the same manager, that completed it)",
                hint="remove it first, or roll back past it",
            )
        return None
    try:
        argv = shlex.split(layer.command)
    except ValueError:
        argv = []
    found = None if "\\x" in layer.command else manager_argv(argv)  # \x: an escaped line
    if found is None:
        raise UsageError(
            f'layer {layer.id} "{escaped(layer.name)}" was made by `{escaped(layer.command)}`,'
            " which replay cannot run again (not a manager's install/remove command line)",
            hint="roll back past it instead, or run it again by hand after",
        )
    return found


def manager_argv(argv: list[str]) -> list[str] | None:
    """`argv` made non-interactive when it is a registered manager's package-changing command
    line that can run again (no local package file, which is gone or elsewhere); else None."""
    from ashcore.registry import managers

    package_files = tuple(f for m in managers() for f in m.package_files)
    if any(a.endswith(package_files) for a in argv[1:]):
        return None
    for manager in managers():
        if (replayed := manager.replay_argv(argv)) is not None:
            return replayed
    return None


def plan(target: Target, first: Layer, last: int | None = None) -> list[Step]:
    """The steps of replaying `first` and what follows it, up to `last` (default: on the
    deployment's line, up to its layer)."""
    line = branch(target, first) if last is None else between(target, first, last)
    return steps_of(target, line, "replayed", "roll back past it instead")


def steps_of(target: Target, layers: list[Layer], verb: str, hint: str) -> list[Step]:
    """The steps of `layers` (oldest first): each by its command, or by its file changes,
    which need its snapshot and its parent's (UsageError, with `hint`, when pruned)."""
    from ashcore.squash import made_of

    steps: list[Step] = []
    pair: Pair | None = None
    for number, layer in enumerate(layers):
        if pair is not None:  # this layer completed the failed one before it: done
            pair = None
            continue
        parts = made_of(target, layer)
        if parts is not None:  # a squash: what it was made of, in order
            steps += [
                Step(s.layer, s.argv, s.pair, stands_for=layer)
                for s in steps_of(target, parts, verb, hint)
            ]
            continue
        after = layers[number + 1] if number + 1 < len(layers) else None
        if after is not None and completes(target, layer, after):
            pair = join(target, layer, after)
            steps.append(Step(after, pair.argv, pair))
            continue
        argv = replay_argv(layer)
        if argv is None and (
            layer.parent is None
            or not os.path.isdir(target.store.layer_path(layer.id))
            or not os.path.isdir(target.store.layer_path(layer.parent))
        ):
            raise UsageError(
                f'layer {layer.id} "{escaped(layer.name)}" is {verb} as its file changes,'
                " and its snapshot or its parent's was pruned",
                hint=hint,
            )
        steps.append(Step(layer, argv))
    return steps


def foresee_dissolved(target: Target, base: Layer, step: Step) -> str | None:
    """Why a step would dissolve on `base` (all it added is there already), or None."""
    from ashcore.sets import sets_of

    if step.argv is None or not step.packages.added or step.packages.removed:
        return None
    sets = sets_of(target, base.id) or {}
    have: dict[str, str] = {}
    for installed in sets.values():
        have.update(installed or {})  # an unknown set tells nothing
    if all(have.get(name) == version for name, version in step.packages.added):
        shown = ", ".join(f"{n} {v}" for n, v in step.packages.added[:3])
        return f"the base has {shown} now"
    return None


# -- the engine ------------------------------------------------------------------------------


