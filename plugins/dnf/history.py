"""dnf5's own record of how a transaction ended: its history database.

libdnf5 finishes the history record (state Ok or Error) just before it calls the
`post_transaction` hooks; a failed scriptlet makes the state Error.
"""

from __future__ import annotations

import os

HISTORY_DB = "transaction_history.sqlite"


def last_transaction_failed(root: str, history_dir: str) -> bool:
    """Whether the newest transaction in the root's dnf5 history ended in error."""
    import sqlite3

    path = os.path.join(root, history_dir.lstrip("/"), HISTORY_DB)
    if not os.path.exists(path):
        return False
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute(
                "SELECT s.name FROM trans t JOIN trans_state s ON t.state_id = s.id "
                "ORDER BY t.id DESC LIMIT 1"
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return row is not None and str(row[0]).lower() != "ok"
