"""Replay: rebuild the deployment's line of layers on another base with the real managers.

`ashctl remove LAYER` (an inner layer) replays the layers after it onto its parent; `ashctl
rebase LAYER --onto BASE` replays LAYER and the layers after it onto BASE. Either way:

1. Under the store lock, the root's drift is kept first (as rollback keeps it), and the plan
   is made: the layers from the first one replayed to the deployment's layer, oldest first.
2. A writable snapshot of the base is made (a deployment of its own, named by a journal) and
   mounted in a folder of its own with proc, sys, dev, a /tmp and the store.
3. Each layer is replayed in order:
   - a package manager's layer runs its recorded command line again, chrooted into the
     snapshot, made non-interactive (`-y`, `--noconfirm`); the hooks inside make the new
     layer, with a true delta. When the manager changes nothing (the base has what it
     installs), the hooks make no layer: the operation *dissolves*, and is reported;
   - a drift or `ashctl run` layer is replayed as its file changes: each path it changed
     (added, changed, removed, modes and owners) is copied from its snapshot. Where a
     replayed operation changed the same path, the drift's version wins (it was the user's
     last word on that path). A change to a manager's own database (`apt-mark hold`, a
     manager's late writes) is not copied, since the file would undo what the replayed
     operations recorded in it: it is named, for the user to redo with the manager;
   - a failed layer and the layer that completed it are one step: the manager's command
     that makes what the two changed (ashcore/pairs.py).
4. Only when every step succeeded, and the root did not move on meanwhile, does the result
   become the deployment: at once on a root that is not booted, at the next boot on the
   booted one (as rollback). The old line stays until pruned; its records say which layer
   replaced each (`replaced_by`).

Any failure leaves everything as it was: the new deployment and the layers made in it are
deleted, and the error names the step, the command and the manager's own last words. A kill
at any point is undone by the next `ashctl doctor --repair` (the journal).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable

from ashcore.data import mount_places
from ashcore.drift import capture_drift, keep_drift, sweep_probes
from ashcore.errors import BackendError, UsageError
from ashcore.log import logger
from ashcore.model import Layer, Origin, Status
from ashcore.ondisk import read_json, write_json
from ashcore.process import is_alive, owner_of
from ashcore.recovery import require_idle
from ashcore.stage import (
    chroot_env,
    mount_stage,
    stage_path,
    unmount_stage,
    wait_described,
)
from ashcore.steps import Step, foresee_dissolved, plan
from ashcore.target import Target
from ashcore.text import escaped

log = logger(__name__)

JOURNAL = "replay.json"


class Outcome:
    def __init__(self) -> None:
        self.made: list[tuple[Layer, int]] = []  # (old layer, the new layer replacing it)
        self.dissolved: list[tuple[Layer, str]] = []
        self.deployment = ""
        self.at_reboot = False


def rebuild(
    target: Target,
    base: Layer,
    first: Layer,
    say: Callable[[str], None],
    *,
    last: int | None = None,
    switch: bool = True,
    removed: Layer | None = None,
) -> Outcome:
    """Replay `first` and the layers after it onto `base`: up to `last`, default the
    deployment's layer. With `switch`, the result becomes the deployment; else it stays a
    branch (its writable stage goes, its layers stay). `removed`: the layer taken out of
    the line (`remove`), replaced too. Everything as it was on any failure."""
    from ashcore.deployments import booted_or_refuse, new_deployment_path

    store, fs = target.store, target.fs
    from ashcore.sizes import require_free

    booted = booted_or_refuse(target, "remove|rebase")
    require_free(target.root, "a replay")
    if base.status == Status.PRUNED or not os.path.isdir(store.layer_path(base.id)):
        raise UsageError(f"layer {base.id} was pruned: nothing to rebuild on", hint="see list")
    with store.locked(target.config.lock_timeout):
        require_idle(target)
        resume(target)
        dep = target.deployment()
        if switch:
            keep_drift(target, dep, strict=True)  # the state left is kept, byte for byte
            sweep_probes(target)
        head, _ = store.head(dep.uuid)
        steps = plan(target, first, last)
        stage = new_deployment_path(target, base)
        write_json(
            os.path.join(store.path, JOURNAL),
            {
                "deployment": os.path.basename(stage),
                "head": head,
                "from": dep.uuid,
                "owner": owner_of(os.getpid()),
            },
        )
        fs.snapshot(store.layer_path(base.id), stage, read_only=False)
        from ashcore.caches import renew_caches

        renew_caches(fs, target.root, stage, carry=True)
        uuid = fs.info(stage).uuid
        store.set_head(uuid, base.id, None)
    outcome = Outcome()
    outcome.deployment = stage
    mountpoint = stage_path(target, stage)
    try:
        mount_stage(target, stage, "replay")
        mount_places(target, mountpoint)  # the same users' data as the root, never a copy
        inner = Target(mountpoint)
        for number, step in enumerate(steps, 1):
            started = time.monotonic()
            say(f"[{number}/{len(steps)}] replaying {step.describe()}")
            before, _ = store.head(uuid)
            if step.argv is None:
                left = _replay_files(target, inner, step.layer)
                if left:
                    shown = ", ".join("/" + escaped(p) for p in left[:3])
                    more = " (and more)" if len(left) > 3 else ""
                    say(
                        f"      not replayed: {shown}{more}: a package manager's own database,"
                        " which only the replayed operations write (redo such a change with"
                        " the manager's own command, as a hold or a mark)"
                    )
            else:
                _replay_command(target, mountpoint, step)
            after, _ = store.head(uuid)
            took = time.monotonic() - started
            if after == before or after is None:
                why = foresee_dissolved(target, base, step) or "it changed nothing"
                outcome.dissolved += [(old, why) for old in step.layers]
                say(f'      dissolved: "{escaped(step.name)}" ({why}) in {took:.1f} s')
                continue
            made = store.get(after)
            if made.status != Status.COMMITTED and step.argv is not None:
                raise BackendError(
                    f"replaying {step.describe()} made a {made.status.value} layer",
                    hint="see `ashctl show` of the old layer; nothing was changed",
                )
            outcome.made += [(old, after) for old in step.layers]
            say(f"      layer {after} ({made.packages.summary()}) in {took:.1f} s")
        _regroup(outcome, steps)
    except BaseException:
        unmount_stage(mountpoint)
        _undo_quietly(target, stage)  # the step's own cause is what the user sees
        raise
    unmount_stage(mountpoint)
    if not switch:
        with store.locked(target.config.lock_timeout):
            _keep_branch(target, stage, uuid, outcome, base)
        return outcome
    with store.locked(target.config.lock_timeout):
        try:
            # A manager started on the root meanwhile (an apt whose dpkg is mid-way): no
            # snapshot of its half-done state as drift; refused as a change while it runs.
            require_idle(target)
            dep_now = target.deployment()
            moved, _ = store.head(dep_now.uuid)
            kept = capture_drift(target, dep_now, strict=True)
            if moved != head or kept != head:
                raise UsageError(
                    "the root changed while it was being rebuilt (a new layer or drift since"
                    f" layer {head}): nothing was replaced",
                    hint="run it again; what changed is kept as a layer",
                )
        except BaseException:
            _undo_quietly(target, stage, held=True)
            raise
        replaced = _mark_replaced(target, outcome, base, removed)
        _switch(target, stage, dep_now.uuid, booted)
        outcome.at_reboot = booted
        _move_labels(target, replaced)
    return outcome


def _regroup(outcome: Outcome, steps: list[Step]) -> None:
    """A squashed layer's parts were replayed one by one: it is replaced by the layer of its
    last part made, and dissolved only when all of them dissolved."""
    group = {step.layer.id: step.stands_for for step in steps if step.stands_for is not None}
    if not group:
        return
    made: dict[int, tuple[Layer, int]] = {}
    for old, new in outcome.made:
        whole = group.get(old.id, old)
        made[whole.id] = (whole, new)  # the last one wins
    dissolved: dict[int, tuple[Layer, str]] = {}
    for old, why in outcome.dissolved:
        whole = group.get(old.id, old)
        if whole.id not in made:
            dissolved.setdefault(whole.id, (whole, why))
    outcome.made = list(made.values())
    outcome.dissolved = list(dissolved.values())


def _mark_replaced(
    target: Target, outcome: Outcome, base: Layer, removed: Layer | None
) -> list[tuple[int, int]]:
    """Record which layer replaced each of the old line's (call under the store lock); the
    old line's other layers (the one removed, those dissolved) are replaced by the new
    line's tip, where what they held is now (or is no more, as asked). Returns the pairs."""
    store = target.store
    pairs = [(old.id, new) for old, new in outcome.made]
    tip = outcome.made[-1][1] if outcome.made else base.id
    made = {old for old, _ in pairs}
    also = [layer.id for layer, _ in outcome.dissolved]
    if removed is not None:
        also.append(removed.id)
    pairs += [(old, tip) for old in also if old not in made]
    for old, new in pairs:
        store.set_replaced_by(old, new)
    return pairs


def _move_labels(target: Target, replaced: list[tuple[int, int]]) -> None:
    from ashcore.labels import move_labels

    for label, old, new in move_labels(target, replaced):
        log.info("moved the label %s from layer %d to layer %d", label, old, new)


def _keep_branch(target: Target, stage: str, uuid: str, outcome: Outcome, base: Layer) -> None:
    """The replay's result as a branch, not deployed (call under the store lock): its layers
    stay, its writable stage goes (`deploy` makes a deployment of the tip when asked), then
    the journal. A kill before the stage is gone is undone by `resume`, as any replay's."""
    from ashcore.caches import drop_caches

    replaced = _mark_replaced(target, outcome, base, None)
    # Until the stage is gone, a kill is undone whole (`resume`: the stage's layers go);
    # after, it is done, and only the journal is left to clear.
    target.store.forget_deployment(uuid)
    drop_caches(target.fs, stage)
    target.fs.delete(stage)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(target.store.path, JOURNAL))
    _move_labels(target, replaced)


def _replay_command(target: Target, mountpoint: str, step: Step) -> None:
    assert step.argv is not None
    # Sizes are measured later, not while the replay waits for each helper.
    env = chroot_env(step.name, ASH_NO_SIZES="1")
    result = subprocess.run(
        ["chroot", mountpoint, *step.argv],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
    )
    ran = time.monotonic()
    wait_described(target, mountpoint)
    log.debug("replay: %s ran, then %.2f s for its helper", step.argv[0], time.monotonic() - ran)
    if result.returncode != 0:
        said, hint = failure(result.stdout or "", result.stderr or "")
        raise BackendError(
            f"replaying {step.describe()} failed (exit {result.returncode}): {escaped(said)}",
            hint=f"nothing was changed; {hint}",
        )


# What the managers say when a package is not in the repositories (any more).
GONE = (
    "Unable to locate package",
    "has no installation candidate",
    "No match for argument",
    "target not found",
    "No package ",
)
HOOK_FAILED = ("ashlayers: cannot make a layer: ", "ashlayers: no layer for this run: ")


def failure(stdout: str, stderr: str) -> tuple[str, str]:
    """The cause of a replayed command's failure, and a hint. When the hooks inside could
    not make the layer, that is the cause (the manager's last line only says its hook
    failed); else the manager's own last line (stderr first)."""
    lines = [x.strip() for x in (stderr + "\n" + stdout).splitlines() if x.strip()]
    ours = [x for x in lines if x.startswith(HOOK_FAILED)]
    if ours:
        cause = ours[-1].split(". Stopped before any change", 1)[0]
        for prefix in HOOK_FAILED:
            cause = cause.removeprefix(prefix)
        return (
            f"the layer could not be made: {cause}",
            "fix that cause and run it again (`ashctl doctor` checks the store)",
        )
    mine = [x for x in stderr.splitlines() if x.strip()] or [
        x for x in stdout.splitlines() if x.strip()
    ]
    said = mine[-1].strip() if mine else "no message"
    if any(word in x for x in lines for word in GONE):
        return said, "a package is gone from the repositories: roll back past that layer"
    return said, "fix the cause or roll back past that layer"


def _replay_files(outer: Target, inner: Target, layer: Layer) -> list[str]:
    """Copy the file changes of `layer` (against its parent) onto the stage, as a layer.
    Changes to the managers' own databases are left out (copying a database file would undo
    what the replayed operations recorded in it); returns those paths."""
    from ashcore.drift import manager_state
    from ashcore.lifecycle import Operation, begin, commit

    store = outer.store
    assert layer.parent is not None
    old, new = store.layer_path(layer.parent), store.layer_path(layer.id)
    changed = sorted(outer.fs.changed_paths(old, new))
    left = [p for p in changed if manager_state(p)]
    paths = [p for p in changed if not manager_state(p)]
    op = Operation(
        origin=Origin(Origin.REPLAY),
        manager=None,
        argv=("ashctl", "replay", str(layer.id)),
        owner=owner_of(os.getpid()),
        name=layer.name,
    )
    begin(inner, op, None)
    try:
        for rel in paths:
            try:
                _copy_entry(new, inner.root, rel)
            except OSError as e:  # an immutable or append-only file, a full filesystem
                raise BackendError(
                    f"cannot replay /{escaped(rel)}: {e.strerror}",
                    hint="see `lsattr` for an immutable file (chattr -i), or free space",
                ) from e
    except BaseException:
        commit(inner, op, None, failed=True)
        raise
    commit(inner, op, None)
    return left


def _undo_quietly(target: Target, stage: str, *, held: bool = False) -> None:
    """Undo a replay that failed; a failure of the undo itself is a warning (doctor finishes
    it), never what hides the step's own error. `held`: the caller holds the store's lock (a
    second flock of this process would wait for the first until lock_timeout)."""
    try:
        if held:
            _undo(target, stage)
            return
        with target.store.locked(target.config.lock_timeout):
            _undo(target, stage)
    except Exception as e:
        log.warning("the failed replay was not undone (`ashctl doctor --repair` will): %s", e)


def _copy_entry(source_root: str, dest_root: str, rel: str) -> None:
    """Make `rel` under `dest_root` what it is under `source_root` (gone if gone there)."""
    source, dest = os.path.join(source_root, rel), os.path.join(dest_root, rel)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
        return
    import stat

    if stat.S_ISDIR(st.st_mode):
        if os.path.lexists(dest) and not os.path.isdir(dest):
            os.unlink(dest)
        os.makedirs(dest, exist_ok=True)
    else:
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        subprocess.run(
            ["cp", "-a", "--reflink=auto", "--no-dereference", "--", source, dest + ".ash-new"],
            check=True,
            capture_output=True,
        )
        os.replace(dest + ".ash-new", dest)
        return
    os.chown(dest, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(dest, st.st_mode & 0o7777)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _undo(target: Target, stage: str) -> None:
    """Delete the stage and every layer made in it (call under the store lock)."""
    from ashcore.caches import drop_caches
    from ashcore.prune import delete_layer

    store, fs = target.store, target.fs
    if fs.is_subvolume(stage):
        uuid = fs.info(stage).uuid
        made = sorted(store.layers_of_deployment(uuid), reverse=True)
        for layer_id in made:
            delete_layer(target, store.get(layer_id))
        store.clear_replaced_by(made)
        drop_caches(fs, stage)
        fs.delete(stage)
        store.forget_deployment(uuid)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(store.path, JOURNAL))


def _switch(target: Target, stage: str, old: str, booted: bool) -> None:
    """Make the stage the deployment (call under the store lock). The journal names what the
    switch retires first: a kill after the switch is finished by `resume`."""
    from ashcore.deployments import deployment_in_store, swap_mount

    store = target.store
    journal_path = os.path.join(store.path, JOURNAL)
    journal = read_json(journal_path)
    if isinstance(journal, dict):
        retired = deployment_in_store(target) if not booted else None
        journal.update(booted=booted, retired=os.path.basename(retired) if retired else None)
        write_json(journal_path, journal)
    if booted:
        target.fs.set_default(stage)
    else:
        swap_mount(target.root, stage)
    _finish(target, journal if isinstance(journal, dict) else {})


def _finish(target: Target, journal: dict[str, object]) -> None:
    """After the switch: as after a rollback's, then the journal goes."""
    from ashcore.rollback import after_switch

    after_switch(target, journal)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(target.store.path, JOURNAL))


def resume(target: Target) -> str | None:
    """Undo a replay that was cut short (call under the store lock): its stage and the layers
    made in it go. A replay whose switch was done is only cleared."""
    journal = read_json(os.path.join(target.store.path, JOURNAL))
    owner = journal.get("owner") if isinstance(journal, dict) else None
    if isinstance(owner, str) and owner[:1].isdigit() and is_alive(owner):
        raise UsageError(
            "a replay is running (ashctl remove or rebase)", hint="wait for it to finish"
        )
    if not isinstance(journal, dict):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(target.store.path, JOURNAL))
        return None
    name = journal.get("deployment")
    stage = os.path.join(target.store.deployments_dir, name) if isinstance(name, str) else ""
    if stage and target.fs.is_subvolume(stage):
        info = target.fs.info(stage)
        if journal.get("booted"):
            switched = target.fs.default_id(target.root) == info.id
        else:
            switched = target.deployment().uuid == info.uuid
        if switched:
            _finish(target, journal)
            return "finished a replay that was cut short after its switch"
        unmount_stage(stage_path(target, str(name)))
    _undo(target, stage)
    return "undid a replay that was cut short: nothing changed"
