"""The shape of the code (issue 22): one folder per CI system, a core that names none of
them, no import circles. Read from the source, so a new file is held to it at once."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from poller.registry import installed

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("jenkins", "teamcity", "buildkite", "buildbot", "bamboo", "gocd")
# Where the core may name a CI system: where the user picks one (`demo --ci`, `register
# --type`, the config's examples), and SEI's own field names (`jenkins_instance_guid`).
MAY_NAME = {"poller/demo.py", "poller/cli.py", "poller/config.py", "poller/standins/sei.py"}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in ("poller", "connectors"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules `name` imports when it is imported (not in functions, not for type checking)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known)
    return out - {name}


def test_no_import_circles() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    cycles = _cycles(graph)
    assert not cycles, f"import circles: {cycles}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _code_words(path: Path) -> str:
    """The file's code: names and strings, without comments and docstrings."""
    docstrings = set()
    for node in ast.walk(ast.parse(path.read_text())):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            docstrings.add(first.value.lineno)
    words = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.COMMENT or (
            tok.type == tokenize.STRING and tok.start[0] in docstrings
        ):
            continue
        if tok.type in (tokenize.NAME, tokenize.STRING):
            words.append(tok.string.lower())
    return " ".join(words)


def test_the_core_names_no_ci_system() -> None:
    """Adding a CI system never touches `poller/`: no code there knows one."""
    offenders = {}
    for path in sorted((ROOT / "poller").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in MAY_NAME:
            continue
        named = [s for s in SYSTEMS if s in _code_words(path)]
        if named:
            offenders[rel] = named
    assert offenders == {}


@pytest.mark.parametrize("system", SYSTEMS)
def test_each_system_lives_in_one_folder(system: str) -> None:
    assert (ROOT / "connectors" / system / "connector.py").is_file()
    standin = ROOT / "connectors" / system / "standin"
    assert standin.is_dir() or standin.with_suffix(".py").is_file()
    assert (ROOT / "docs" / "connectors" / f"{system}.md").is_file()
    assert list((ROOT / "tests" / "connectors" / system).glob("test_*.py"))
    assert installed()[system].value.startswith(f"connectors.{system}.")


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_connector_uses_only_the_contract_the_records_and_the_kit(system: str) -> None:
    """A connector depends on `connectors.base`, `poller.model`, `poller.errors` and the
    toolkit (`connectors.kit`), and on nothing else of the core."""
    allowed = {"poller.model", "poller.errors", "connectors.base"}
    for path in (ROOT / "connectors" / system).glob("*.py"):
        tree = ast.parse(path.read_text())
        ours = {
            n.module
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
            and n.module
            and n.module.split(".")[0] in ("poller", "connectors")
        }
        extra = {
            m
            for m in ours
            if m not in allowed and not m.startswith(("connectors.kit.", f"connectors.{system}."))
        }
        assert extra == set(), f"{path.relative_to(ROOT)} imports {sorted(extra)}"
