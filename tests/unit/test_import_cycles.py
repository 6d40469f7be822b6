"""No two modules of localllm import each other, directly or round a longer loop, wherever the imports
sit: at the top of a module or inside a function (a function-level import hides a cycle from the
reader and from Python until the function runs, but it is a cycle all the same).

The graph is grimp's (import-linter's engine), which records every import statement of a module,
function bodies included. What counts as an edge:

- Every explicit import: `import a.b`, `from a import b` (an edge to the submodule `a.b` when `b` is
  one, else to the package `a`, i.e. its __init__). So a child that takes a name from its own package
  (`from localllm.config import X` in `localllm.config.state`) while the package's __init__ imports
  that child is a cycle, and is reported.
- Not the implicit parent imports: Python runs `a/__init__.py` before any `a.b`, but that only means
  the parent is *being* initialised when the child runs; nothing of it is read unless the child names
  it, which is then an explicit edge. Counting the implicit edges would make every package whose
  __init__ re-exports a child a "cycle", which tells nothing.
- Not imports under `if TYPE_CHECKING:`: they never run and only name types for annotations (the
  layer contracts of import-linter still see them).
"""

from __future__ import annotations

import textwrap
from collections import deque
from pathlib import Path

import grimp


def build(package: str) -> grimp.ImportGraph:
    return grimp.build_graph(package, exclude_type_checking_imports=True, cache_dir=None)


def adjacency(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (or a module importing itself), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """The shortest loop through the component's first module: [a, b, ..., a]."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & members):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def cycles(package: str, where: bool = False) -> list[str]:
    """One line per cycle: `a -> b -> a`; with `where`, the line of each import (`b (a.py:12)`)."""
    graph = build(package)
    edges = adjacency(graph)
    found = []
    for component in strongly_connected(edges):
        loop = shortest_cycle(edges, component)
        steps = [loop[0]]
        for importer, imported in zip(loop, loop[1:], strict=False):
            lines = sorted(d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported))
            steps.append(f"{imported} ({importer}:{','.join(map(str, lines))})" if where else imported)
        found.append(" -> ".join(steps))
    return found


def test_no_module_of_localllm_is_in_an_import_cycle() -> None:
    found = cycles("localllm", where=True)
    assert not found, ("Import cycles (function-level imports included); move what both sides need "
                       "into a module below them:\n  " + "\n  ".join(found))


def test_the_check_sees_cycles_hidden_in_functions(tmp_path: Path, monkeypatch) -> None:
    """The machinery itself: a cycle made only of function-level imports, one through a package's
    __init__, and one under TYPE_CHECKING (not a cycle: it never runs)."""
    pkg = tmp_path / "circles_probe"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "def f():\n    from circles_probe import b\n    return b\n",
        "b.py": "def g():\n    from circles_probe.a import f\n    return f\n",
        "sub/__init__.py": "from circles_probe.sub.child import VALUE\n",
        "sub/child.py": "def h():\n    from circles_probe.sub import VALUE\n    return VALUE\nVALUE = 1\n",
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from circles_probe.c import C\n",
        "c.py": "from circles_probe.typed import TYPE_CHECKING\nclass C: ...\n",
        "lone.py": "from circles_probe import a\n",  # imports into a cycle without being in one
    }
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert sorted(cycles("circles_probe")) == [
        "circles_probe.a -> circles_probe.b -> circles_probe.a",
        "circles_probe.sub -> circles_probe.sub.child -> circles_probe.sub",
    ]
