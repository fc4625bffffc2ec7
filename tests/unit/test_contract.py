"""The contract: the core names no manager (ashcore/manager.py, ashcore/registry.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ashcore.manager import Manager
from ashcore.registry import managers, records_manager

CORE = Path(__file__).resolve().parents[2] / "ashcore"


def _words(manager: Manager) -> set[str]:
    """Every name, command word and path a manager declares."""
    words = {manager.name, *manager.commands, *manager.programs, *manager.state}
    words |= set(manager.recorded_as)
    words |= {*manager.noise, *manager.lock_files, *manager.package_files}
    words |= {*manager.made_at_start}
    words |= {p for pair in (*manager.caches, *manager.indexes) for p in pair}
    return {w for w in words if w}


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module's code (docstrings, prose, left out)."""
    tree = ast.parse(path.read_text())
    prose = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
    ]


def test_every_registered_manager_loads() -> None:
    names = [m.name for m in managers()]
    assert names == sorted(set(names), key=names.index) and len(names) >= 3
    for manager in managers():
        assert manager.programs and manager.state and manager.commands, manager.name


def test_the_core_names_no_manager_in_its_code() -> None:
    words = set().union(*(_words(m) for m in managers()))
    words |= {"dpkg", "rpm", "alpm", "zypper", "yum", "dnf4", "apt-mark"}  # their families' words
    pattern = re.compile(
        r"(?<![\w.-])("
        + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        + r")(?![\w-])"
    )
    found = []
    for path in sorted(CORE.rglob("*.py")):
        for line, text in _code_strings(path):
            if (match := pattern.search(text)) is not None:
                where = f"{path.relative_to(CORE)}:{line}"
                found.append(f"{where}: {match.group(1)!r} in {text[:60]!r}")
    assert not found, "\n".join(found)


def test_replay_asks_each_manager() -> None:
    by_name = {m.name: m for m in managers()}
    assert by_name["apt"].replay_argv(["apt-get", "install", "htop"]) == [
        "apt-get",
        "-y",
        "install",
        "htop",
    ]
    assert by_name["apt"].replay_argv(["apt-get", "-qy", "install", "htop"]) == [
        "apt-get",
        "-qy",
        "install",
        "htop",
    ]
    assert by_name["apt"].replay_argv(["apt-get", "update"]) is None
    assert by_name["dnf"].replay_argv(["dnf5", "remove", "x"]) == ["dnf5", "-y", "remove", "x"]
    assert by_name["pacman"].replay_argv(["pacman", "-S", "vim"]) == [
        "pacman",
        "--noconfirm",
        "-S",
        "vim",
    ]
    assert by_name["pacman"].replay_argv(["pacman", "-Q"]) is None


def _core_imports() -> dict[str, set[str]]:
    """Each core module (dotted) -> the core modules it imports, anywhere in it (a lazy
    import inside a function counts: it ties the rooms as much as one at the top)."""
    modules = {
        ".".join(p.relative_to(CORE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in CORE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_core_has_no_import_cycle() -> None:
    graph = _core_imports()
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in path:
            raise AssertionError("an import cycle: " + " -> ".join(path[path.index(name) :]))
        if name in done:
            return
        path.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_every_manager_a_hook_records_is_declared() -> None:
    """A pulled layer keeps its manager only when some manager declares it (name or
    recorded_as): every value the plugins' hooks write must be (dnf5's and dpkg's were
    dropped on arrival once, so their layers replayed as file changes)."""
    plugins = CORE.parent / "plugins"
    said = set()
    for path in plugins.rglob("*.py"):
        text = path.read_text()
        said |= set(re.findall(r'^(?:MANAGER|PLUGIN) = "([\w-]+)"', text, re.M))
        for pair in re.findall(r'manager = "([\w-]+)" if .* else "([\w-]+)"', text):
            said |= set(pair)
    said -= {"ashlayers"}
    assert {"apt", "dpkg", "dnf5", "dnf4", "pacman", "zypper"} <= said, said
    assert [s for s in sorted(said) if not records_manager(s)] == []
    assert not records_manager("rm -rf") and not records_manager(None)
