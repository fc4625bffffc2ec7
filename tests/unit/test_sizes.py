from __future__ import annotations

import pytest

from ashcore.config import load_config
from ashcore.errors import ConfigError
from ashcore.sizes import human, new_bytes
from ashcore.text import parse_size


def test_new_bytes_counts_only_what_the_parent_does_not_share() -> None:
    parent = [(1000, 100), (5000, 50)]
    assert new_bytes([(1000, 100)], parent) == 0  # shared whole
    assert new_bytes([(1050, 100)], parent) == 50  # half shared
    assert new_bytes([(900, 300)], parent) == 200  # the parent's extent inside
    assert new_bytes([(900, 4200)], parent) == 4200 - 150  # spans both
    assert new_bytes([(9000, 10)], parent) == 10  # new
    assert new_bytes([(-1, 30)], parent) == 30  # inline data is the file's own
    assert new_bytes([(1000, 100)], []) == 100


@pytest.mark.parametrize(
    ("text", "size"),
    [("20G", 20 << 30), ("500M", 500 << 20), ("1.5T", 3 << 39), ("4096", 4096), ("2GiB", 2 << 30)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "-5G", "nan", "1e9", "20X", "\u0661\u0662G", "1.2.3G"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_human() -> None:
    assert [human(x) for x in (None, 0, 1023, 1536, 5 << 20, 12 << 30)] == [
        "?",
        "0B",
        "1023B",
        "1.5K",
        "5.0M",
        "12G",
    ]


def test_retention_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "etc/ash/ash.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('[retention]\nmax_size = "20G"\nkeep_base = false\nwarn_free = "500M"\n')
    rules = load_config(str(tmp_path)).retention
    assert (rules.max_size, rules.keep_base, rules.warn_free) == (20 << 30, False, 500 << 20)
    for bad in ('max_size = "lots"', "keep = -1", "keep_days = nan", "keep_base = 1"):
        conf.write_text(f"[retention]\n{bad}\n")
        with pytest.raises(ConfigError):
            load_config(str(tmp_path))
