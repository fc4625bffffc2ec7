"""The domain values: layer status, layer records, package sets and their deltas, a pending
layer's seal, and where a layer comes from (its origin).

This module is on every hook's path: its values are `ashcore.value.Value`s, not dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ashcore.ondisk import loads
from ashcore.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Protocol

PackageSet = Mapping[str, str]
"""Installed packages of one manager's database: name -> version."""

if TYPE_CHECKING:

    class PackageDatabase(Protocol):
        """The database face of a plugin: reads any root's installed set with the manager's
        bindings. It may also have `failed(before, after) -> bool` (see describe.describe),
        and `state_paths(root) -> tuple[str, ...]` when `read_installed(path)` reads only
        those files (or folders' names) under `path`: the set before a run is then read from
        its parent layer's snapshot after the run (describe.before_of), not by the pre
        hook, when those paths are as the snapshot has them."""

        def read_installed(self, root: str) -> dict[str, str]: ...

        def compare_versions(self, a: str, b: str) -> int: ...


def reads_files(database: PackageDatabase) -> bool:
    """Whether `database.read_installed(path)` reads the files under `path` alone (its
    `state_paths`), so that a layer's snapshot gives the set as it was when it was made."""
    return hasattr(database, "state_paths")


class Status(str):
    """A layer's status: one of the constants below. A str, not an enum.StrEnum: `enum`
    costs every hook 1.5 ms to import."""

    __slots__ = ()
    PENDING: ClassVar[Status]  # a transaction has begun and not ended: not a layer yet
    COMMITTED: ClassVar[Status]
    FAILED: ClassVar[Status]
    INTERRUPTED: ClassVar[Status]
    DRIFT: ClassVar[Status]
    PRUNED: ClassVar[Status]

    def __new__(cls, value: str) -> Status:
        if value not in STATUSES:
            raise ValueError(f"{value!r} is not a layer status")
        return str.__new__(cls, value)

    @property
    def value(self) -> str:
        return str(self)


STATUSES = ("pending", "committed", "failed", "interrupted", "drift", "pruned")
(
    Status.PENDING,
    Status.COMMITTED,
    Status.FAILED,
    Status.INTERRUPTED,
    Status.DRIFT,
    Status.PRUNED,  # the snapshot was deleted by retention; the record stays, as history
) = map(Status, STATUSES)


class PackageDelta(Value):
    __slots__ = ("added", "downgraded", "removed", "upgraded")
    added: tuple[tuple[str, str], ...]
    removed: tuple[tuple[str, str], ...]
    upgraded: tuple[tuple[str, str, str], ...]
    downgraded: tuple[tuple[str, str, str], ...]

    def __init__(
        self,
        added: tuple[tuple[str, str], ...] = (),
        removed: tuple[tuple[str, str], ...] = (),
        upgraded: tuple[tuple[str, str, str], ...] = (),
        downgraded: tuple[tuple[str, str, str], ...] = (),
    ) -> None:
        self._init(added=added, removed=removed, upgraded=upgraded, downgraded=downgraded)

    @classmethod
    def between(
        cls, before: PackageSet, after: PackageSet, compare: Callable[[str, str], int]
    ) -> PackageDelta:
        added = tuple(sorted((n, v) for n, v in after.items() if n not in before))
        removed = tuple(sorted((n, v) for n, v in before.items() if n not in after))
        upgraded: list[tuple[str, str, str]] = []
        downgraded: list[tuple[str, str, str]] = []
        for name in sorted(before.keys() & after.keys()):
            old, new = before[name], after[name]
            if old == new:
                continue
            # Equal by the manager's rules but spelled differently still changed.
            (downgraded if compare(old, new) > 0 else upgraded).append((name, old, new))
        return cls(added, removed, tuple(upgraded), tuple(downgraded))

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.upgraded or self.downgraded)

    def merge(self, other: PackageDelta) -> PackageDelta:
        """Both deltas in one (of two managers, whose package names are their own)."""
        return PackageDelta(
            tuple(sorted(self.added + other.added)),
            tuple(sorted(self.removed + other.removed)),
            tuple(sorted(self.upgraded + other.upgraded)),
            tuple(sorted(self.downgraded + other.downgraded)),
        )

    def revert(self, after: PackageSet) -> dict[str, str]:
        """The package set this delta was computed from, given the set it led to."""
        before = dict(after)
        for name, _ in self.added:
            before.pop(name, None)
        for name, version in self.removed:
            before[name] = version
        for name, old, _ in self.upgraded + self.downgraded:
            before[name] = old
        return before

    def to_json(self) -> dict[str, list[dict[str, str]]]:
        return {
            "added": [{"name": n, "version": v} for n, v in self.added],
            "removed": [{"name": n, "version": v} for n, v in self.removed],
            "upgraded": [{"name": n, "old": o, "new": w} for n, o, w in self.upgraded],
            "downgraded": [{"name": n, "old": o, "new": w} for n, o, w in self.downgraded],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PackageDelta:
        if not data:
            return cls()
        return cls(
            tuple((d["name"], d["version"]) for d in data.get("added", ())),
            tuple((d["name"], d["version"]) for d in data.get("removed", ())),
            tuple((d["name"], d["old"], d["new"]) for d in data.get("upgraded", ())),
            tuple((d["name"], d["old"], d["new"]) for d in data.get("downgraded", ())),
        )

    def summary(self) -> str:
        parts = [
            f"{len(items)} {word}"
            for items, word in (
                (self.added, "added"),
                (self.removed, "removed"),
                (self.upgraded, "upgraded"),
                (self.downgraded, "downgraded"),
            )
            if items
        ]
        return ", ".join(parts) if parts else "no package change"


class Layer(Value):
    __slots__ = (
        "command",
        "created",
        "finished",
        "id",
        "manager",
        "name",
        "packages",
        "parent",
        "pinned",
        "replaced_by",
        "size",
        "status",
        "uuid",
    )
    id: int
    name: str
    parent: int | None
    manager: str | None
    command: str
    status: Status
    created: str
    finished: str | None
    packages: PackageDelta
    pinned: bool
    uuid: str | None
    size: int | None  # bytes added over the parent (ashcore/sizes.py); None: not measured
    replaced_by: int | None  # the layer a replay made in its place (ashcore/replay.py)

    def __init__(
        self,
        id: int,
        name: str,
        parent: int | None,
        manager: str | None,
        command: str,
        status: Status,
        created: str,
        finished: str | None = None,
        packages: PackageDelta | None = None,
        pinned: bool = False,
        uuid: str | None = None,
        size: int | None = None,
        replaced_by: int | None = None,
    ) -> None:
        self._init(
            id=id,
            name=name,
            parent=parent,
            manager=manager,
            command=command,
            status=status,
            created=created,
            finished=finished,
            packages=packages or PackageDelta(),
            pinned=pinned,
            uuid=uuid,
            size=size,
            replaced_by=replaced_by,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "parent": self.parent,
            "manager": self.manager,
            "command": self.command,
            "status": self.status.value,
            "created": self.created,
            "finished": self.finished,
            "packages": self.packages.to_json(),
            "pinned": self.pinned,
            "uuid": self.uuid,
            "size": self.size,
            "replaced_by": self.replaced_by,
        }

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], layer_id: int, uuid: str) -> Layer:
        """The layer a manifest describes, read defensively (it may be old or hand-edited)."""

        def text(key: str) -> str | None:
            value = manifest.get(key)
            return value if isinstance(value, str) else None

        status = text("status") or ""
        parent = manifest.get("parent")
        return cls(
            id=layer_id,
            name=text("name") or f"layer {layer_id}",
            parent=parent if isinstance(parent, int) else None,
            manager=text("manager"),
            command=text("command") or "",
            status=Status(status) if status in STATUSES else Status.INTERRUPTED,
            created=text("created") or text("finished") or "",
            finished=text("finished"),
            packages=PackageDelta.from_json(manifest.get("packages")),
            pinned=bool(manifest.get("pinned")),
            uuid=uuid,
            size=size if isinstance(size := manifest.get("size"), int) else None,
        )


Checkpoint = tuple[int, float]
"""(generation, time): every change to a deployment after it has a later transid and ctime."""


class Seal(Value):
    """A pending layer's sealed state: its snapshot `<id>.partial` was taken in the manager's
    post hook, before the manager went on. `failed`: the hook's verdict, None when the
    database face judges it (apt: a package left part-way)."""

    __slots__ = ("checked", "failed")
    checked: Checkpoint
    failed: bool | None

    def __init__(self, checked: Checkpoint, failed: bool | None) -> None:
        self._init(checked=checked, failed=failed)

    def to_text(self) -> str:
        """As JSON, without the json module (5 ms to import, on a post hook's path)."""
        failed = {None: "null", True: "true", False: "false"}[self.failed]
        return (
            f'{{"generation": {int(self.checked[0])}, "time": {float(self.checked[1])!r},'
            f' "failed": {failed}}}'
        )

    @classmethod
    def from_text(cls, text: str | None) -> Seal | None:
        if not text:
            return None
        data = loads(text)
        return cls((int(data["generation"]), float(data["time"])), data.get("failed"))


class Origin(Value):
    """Where a layer comes from: a package manager's run (through its hooks), drift, `ashctl
    run`, a replay, a squash, or the base layer setup takes. Records and manifests keep it as
    text in their `plugin` field, as they always have: the plugin's name (apt, dnf, pacman,
    zypper), "run", "replay", "squash", "ashctl" for the base, nothing (NULL) for drift;
    parsed here alone."""

    # The kinds (constants, not an enum: `enum` costs every hook 1.5 ms to import).
    MANAGER = "manager"
    DRIFT = "drift"
    RUN = "run"
    REPLAY = "replay"
    BASE = "base"
    SQUASH = "squash"  # several layers made one (ashcore/squash.py)

    __slots__ = ("kind", "manager")
    kind: str
    manager: str | None  # the plugin's name, for a manager's run

    def __init__(self, kind: str, manager: str | None = None) -> None:
        self._init(kind=kind, manager=manager)

    @classmethod
    def of(cls, manager: str) -> Origin:
        return cls(cls.MANAGER, manager)

    @classmethod
    def from_text(cls, text: str | None) -> Origin:
        """The origin a record's or manifest's `plugin` field names."""
        if text is None:
            return cls(cls.DRIFT)
        kind = _KIND_OF_TEXT.get(text)
        return cls(kind) if kind is not None else cls(cls.MANAGER, text)

    def to_text(self) -> str | None:
        """As records and manifests keep it (`from_text` reads it back)."""
        return self.manager if self.kind == Origin.MANAGER else _TEXT_OF_KIND[self.kind]

    @property
    def config(self) -> str:
        """Which `/etc/ash/hooks.d/<config>.toml` applies to its runs."""
        return self.to_text() or "run"


_TEXT_OF_KIND: dict[str, str | None] = {
    Origin.DRIFT: None,
    Origin.RUN: "run",
    Origin.REPLAY: "replay",
    Origin.BASE: "ashctl",
    Origin.SQUASH: "squash",
}
_KIND_OF_TEXT = {text: kind for kind, text in _TEXT_OF_KIND.items() if text is not None}


def natural_compare(a: str, b: str) -> int:
    """A version order good enough to tell an upgrade from a downgrade across layers."""

    import re  # here: `re` costs every hook 2 ms to import

    def key(v: str) -> list[tuple[int, int | str]]:
        return [(1, int(p)) if p.isdigit() else (0, p) for p in re.split(r"(\d+)", v) if p]

    ka, kb = key(a), key(b)
    return (ka > kb) - (ka < kb)
