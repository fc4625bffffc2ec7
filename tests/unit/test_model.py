from __future__ import annotations

from ashcore.model import Origin, PackageDelta, natural_compare


def test_delta_between_sorts_changes_by_the_managers_order() -> None:
    before = {"a": "1.0", "b": "2.0", "c": "1.0", "d": "5"}
    after = {"a": "1.0", "b": "2.1", "c": "0.9", "e": "1"}
    delta = PackageDelta.between(before, after, natural_compare)
    assert delta.added == (("e", "1"),)
    assert delta.removed == (("d", "5"),)
    assert delta.upgraded == (("b", "2.0", "2.1"),)
    assert delta.downgraded == (("c", "1.0", "0.9"),)
    assert delta.summary() == "1 added, 1 removed, 1 upgraded, 1 downgraded"


def test_an_empty_delta_is_false_and_json_round_trips() -> None:
    assert not PackageDelta.between({"a": "1"}, {"a": "1"}, natural_compare)
    delta = PackageDelta.between({"x": "1"}, {"y": "2"}, natural_compare)
    assert PackageDelta.from_json(delta.to_json()) == delta
    assert delta.to_json()["added"] == [{"name": "y", "version": "2"}]


def test_revert_recovers_the_set_before() -> None:
    before = {"a": "1", "b": "2", "c": "3"}
    after = {"a": "2", "c": "1", "d": "1"}
    delta = PackageDelta.between(before, after, natural_compare)
    assert delta.revert(after) == before


def test_natural_compare() -> None:
    assert natural_compare("1.10", "1.9") == 1
    assert natural_compare("2.0", "2.0") == 0
    assert natural_compare("1.0-1", "1.0-2") == -1


def test_an_origin_reads_back_as_records_and_manifests_keep_it() -> None:
    # What stores written before Origin hold: the plugin's name, run, replay, ashctl, NULL.
    for text, kind, config in (
        ("apt", Origin.MANAGER, "apt"),
        ("zypper", Origin.MANAGER, "zypper"),
        ("run", Origin.RUN, "run"),
        ("replay", Origin.REPLAY, "replay"),
        ("ashctl", Origin.BASE, "ashctl"),
        (None, Origin.DRIFT, "run"),
    ):
        origin = Origin.from_text(text)
        assert origin.kind == kind and origin.to_text() == text and origin.config == config
        assert origin.manager == (text if kind == Origin.MANAGER else None)
    assert Origin.of("dnf") == Origin.from_text("dnf") != Origin.of("apt")
