"""A failed layer completed by the one after it (`dpkg -i x.deb` whose dependency is
missing, then `apt-get -f install`): replayed, exported and applied as one step.

Neither layer can run again alone: the first failed and names a package file (gone, or on
another machine); the second only finishes what the first left. Carrying the first as its
file changes would make a false record: a package's record is in its manager's database,
which no bundle carries (a copied database would undo what the replayed operations wrote
there), so the files would be there and the manager would not know them. Instead the pair
is one step whose result is the second layer's package set: the manager's own command
installs what the two changed together, at the versions the second left
(`Manager.install_argv`), and the hooks record its layer as they record any other. A
package that no repository has (a local file's) cannot be installed so: the step fails and
says so, as for a package gone from the repositories.
"""

from __future__ import annotations

from dataclasses import dataclass

from ashcore.errors import UsageError
from ashcore.model import Layer, PackageDelta, Status
from ashcore.naming import MAX_NAME
from ashcore.registry import manager_named
from ashcore.text import escaped

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.target import Target


@dataclass(frozen=True)
class Pair:
    """A failed layer, the layer that completed it, and the one step that makes both."""

    failed: Layer
    completing: Layer
    argv: list[str]
    delta: PackageDelta

    @property
    def name(self) -> str:
        name = f"{self.failed.name} + {self.completing.name}"
        return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "\u2026"


def completes(target: Target, failed: Layer, after: Layer) -> bool:
    """Whether `after` is the layer that went on from the failed `failed`: its child,
    committed, made through the same plugin (dpkg and apt-get are both apt's). That it
    finished what `failed` left is told by its package set (`join`)."""
    return (
        failed.status == Status.FAILED
        and after.parent == failed.id
        and after.status in (Status.COMMITTED, Status.PRUNED)
        and plugin_of(target, failed) is not None
        and plugin_of(target, failed) == plugin_of(target, after)
    )


def plugin_of(target: Target, layer: Layer) -> str | None:
    """The plugin whose hooks made `layer`, when it is a manager's."""
    plugin = target.store.layer_owner(layer.id)[1]
    return plugin if manager_named(plugin) is not None else None


def join(target: Target, failed: Layer, completing: Layer) -> Pair:
    """The pair's one step; UsageError, saying why, when there is none."""
    from ashcore.sets import delta_between, sets_of

    manager = manager_named(plugin_of(target, failed))
    what = (
        f'layer {failed.id} "{escaped(failed.name)}" failed and layer {completing.id}'
        f' "{escaped(completing.name)}" went on from it'
    )
    hint = "roll back past the failed layer instead"
    if manager is None:
        raise UsageError(f"{what}, by a manager this ashctl does not know", hint=hint)
    plugin = manager.shares_database or manager.name
    before = sets_of(target, failed.parent) if failed.parent is not None else None
    after = sets_of(target, completing.id)
    if before is None or after is None or before.get(plugin) is None or after.get(plugin) is None:
        raise UsageError(f"{what}, but their package sets are unknown", hint=hint)
    delta = delta_between({plugin: before[plugin]}, {plugin: after[plugin]}).get(plugin)
    if not delta:
        raise UsageError(f"{what}: together they changed no package, nothing to run", hint=hint)
    argv = manager.install_argv(delta)
    replayed = manager.replay_argv(argv) if argv is not None else None
    if replayed is None:
        raise UsageError(
            f"{what}, but no {manager.name} command makes their change ({delta.summary()})"
            " again: a package is left part-way, or the manager has no such command",
            hint=hint,
        )
    return Pair(failed, completing, replayed, delta)
