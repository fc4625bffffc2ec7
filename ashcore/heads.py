"""Each deployment's head: the layer it is based on, and up to when its changes since were
looked at (the `deployments` table). The store keeps them (`Store` is a `Heads`)."""

from __future__ import annotations

from ashcore.model import Checkpoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3


class Heads:
    """The deployments half of `Store`."""

    if TYPE_CHECKING:

        @property
        def db(self) -> sqlite3.Connection: ...

    def head(self, deployment: str) -> tuple[int | None, Checkpoint | None]:
        """The deployment's layer, and up to when its changes since were last looked at."""
        head, checked, _ = self.head_state(deployment)
        return head, checked

    def head_state(self, deployment: str) -> tuple[int | None, Checkpoint | None, float | None]:
        """`head`, and until when the head's manager wrote its own late writes (finalize)."""
        row = self.db.execute(
            "SELECT head, checked_generation, checked_time, late_until FROM deployments"
            " WHERE uuid = ?",
            (deployment,),
        ).fetchone()
        if row is None:
            return None, None, None
        checked = (row[1], row[2]) if row[1] is not None and row[2] is not None else None
        return row[0], checked, row[3]

    def set_head(
        self,
        deployment: str,
        layer_id: int | None,
        checked: Checkpoint | None,
        late_until: float | None = None,
    ) -> None:
        generation, when = checked if checked is not None else (None, None)
        self.db.execute(
            "INSERT INTO deployments (uuid, head, checked_generation, checked_time, late_until)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(uuid) DO UPDATE SET head = excluded.head,"
            " checked_generation = excluded.checked_generation,"
            " checked_time = excluded.checked_time, late_until = excluded.late_until",
            (deployment, layer_id, generation, when, late_until),
        )

    def set_checked(self, deployment: str, checked: Checkpoint) -> None:
        self.db.execute(
            "UPDATE deployments SET checked_generation = ?, checked_time = ? WHERE uuid = ?",
            (*checked, deployment),
        )

    def set_late_until(self, deployment: str, late_until: float) -> None:
        self.db.execute(
            "UPDATE deployments SET late_until = max(coalesce(late_until, 0), ?) WHERE uuid = ?",
            (late_until, deployment),
        )

    def forget_deployment(self, deployment: str) -> None:
        self.db.execute("DELETE FROM deployments WHERE uuid = ?", (deployment,))

    def heads(self) -> list[int]:
        return [
            r[0] for r in self.db.execute("SELECT head FROM deployments WHERE head IS NOT NULL")
        ]
