"""Labels' rules, and a store's records of them (SQLite in a folder: no btrfs needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ashcore.errors import NotFoundError, UsageError
from ashcore.labels import check_label
from ashcore.model import Layer, Status
from ashcore.store import SCHEMA_VERSION, Store


@pytest.mark.parametrize("label", ["desktop", "mail-server", "web.v2", "a", "x_1+2", "9lives"])
def test_a_label_is_a_plain_word(label: str) -> None:
    assert check_label(label) == label


@pytest.mark.parametrize(
    "label", ["", "12", "a..b", "-x", ".x", "a b", "a/b", "x" * 65, "émoji", "a\nb", "a:b"]
)
def test_what_is_no_label_is_refused_in_one_line(label: str) -> None:
    with pytest.raises(UsageError) as raised:
        check_label(label)
    assert "\n" not in str(raised.value).replace(repr(label), "")


def _store(tmp_path: Path) -> Store:
    store = Store(str(tmp_path))
    store.create_layout()
    for layer_id, name in ((1, "base"), (2, "mail"), (3, "apt-get install x")):
        store.insert_layer(
            Layer(layer_id, name, layer_id - 1 or None, None, name, Status.COMMITTED, "now")
        )
    return store


def test_find_resolves_ids_labels_and_names_and_refuses_a_clash(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.set_label("desktop", 3)
    assert store.find("desktop").id == 3
    assert store.find("3").id == 3 and store.find("apt-get install x").id == 3
    assert store.labels() == {3: ["desktop"]}
    store.set_label("desktop", 1)  # moved
    assert store.labels() == {1: ["desktop"]} and store.labelled("desktop") == 1
    store.set_label("base", 1)  # a label that is its own layer's name: no clash
    assert store.find("base").id == 1
    store.set_label("mail", 3)  # that is layer 2's name: ambiguous
    with pytest.raises(NotFoundError) as raised:
        store.find("mail")
    assert "label of layer 3 and the name of layer 2" in str(raised.value)
    assert raised.value.hint == "use an id: 3 or 2"
    store.delete_row(3)  # a layer's labels go with it
    assert store.labelled("mail") is None and store.find("mail").id == 2
    store.set_label("base", None)
    assert store.labels() == {1: ["desktop"]}


def test_an_older_database_gains_the_labels_table(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.db.execute("DROP TABLE labels")
    store.db.execute("PRAGMA user_version=4")
    store.close()
    again = Store(str(tmp_path))
    assert again.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    again.set_label("mail", 2)
    assert again.find("mail").id == 2
