"""The package's import graph has no cycle: the layers import downwards only.

Edges are the imports a module runs when it is imported (its top level, ``if TYPE_CHECKING:``
blocks excluded); imports inside functions are deferred on purpose (optional dependencies, the
command line's start-up) and are not edges. Nodes are ``attnprompt``'s direct children: each
sub-package (``auxiliary``, ``bench``, ``files``...) is one node, as is each top-level module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import attnprompt

PACKAGE = Path(attnprompt.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Absolute names of the attnprompt modules imported when ``module`` is imported."""
    out: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.split(".")[0] == "attnprompt")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "attnprompt":
                    continue
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)  # "from . import maps"

    visit(tree.body)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = _top_level_imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py")
        edges[name] = {m for m in imported if m in modules and m != name}
    return edges


def _node(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_the_package_level_import_graph_is_acyclic():
    package_edges: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        if module == "attnprompt":  # the root only re-exports (lazily)
            continue
        package_edges.setdefault(_node(module), set()).update(
            _node(t) for t in targets if _node(t) != _node(module) and t != "attnprompt")
    assert _find_cycle(package_edges) is None, " -> ".join(_find_cycle(package_edges) or [])


def test_the_module_level_import_graph_is_acyclic():
    edges = {m: {t for t in ts if t != "attnprompt"} for m, ts in _graph().items()}
    assert _find_cycle(edges) is None, " -> ".join(_find_cycle(edges) or [])


def test_the_graph_sees_real_edges():
    # a check of the checker: it must find the imports the pipeline is built from
    edges = _graph()
    assert {"attnprompt.maps", "attnprompt.auxiliary.protocol", "attnprompt.styles"} <= edges["attnprompt.pipeline"]
    assert "attnprompt.pipeline" in edges["attnprompt.prompter"]
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert _find_cycle(cyclic) == ["a", "b", "c", "a"]
