"""The house rules, read from the source: the import graph of ``src/wirecall`` (with ``ast``,
nothing is imported) and the size of modules and functions.

Which imports count:

* the layer rules (protocol, codec, transport, feature rooms) and the private-name rule count
  *every* import statement: at module level, inside functions (deferred imports) and under
  ``if TYPE_CHECKING:``. A deferred or type-only import is still a dependency a reader has
  to follow, and deferring an import is how a layering breach hides;
* the cycle rule counts the imports that run when the module is imported: module level,
  class bodies, ``try``/``if`` blocks, but not function bodies and not ``TYPE_CHECKING``
  blocks (those cannot deadlock an import; the layer rules still see them).

An import of a name from a package counts as an import of the submodule when the name is
one (``from wirecall.transport import native`` -> ``wirecall.transport.native``); importing a
module does not count as importing its parent packages (every module would import
``wirecall/__init__`` and so everything).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"
PKG = SRC / "wirecall"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (a wirecall module when it is one, else the dotted name)
    names: tuple[str, ...]  # the names of a ``from x import a, b``; () for ``import x``
    line: int
    deferred: bool  # inside a function body
    type_only: bool  # under ``if TYPE_CHECKING:``
    source: str = ""  # the module after ``from`` (resolved), when it is not the target

    def __str__(self) -> str:
        what = f"from {self.source or self.target} import {', '.join(self.names)}" if (
            self.names) else f"import {self.target}"
        tags = [t for t, on in (("deferred", self.deferred), ("TYPE_CHECKING", self.type_only))
                if on]
        return f"{self.module}:{self.line}: {what}" + (f"  [{', '.join(tags)}]" if tags else "")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


FILES: dict[str, Path] = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
MODULES = frozenset(FILES)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_pkg = FILES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports_of(module: str) -> list[Import]:
    tree = ast.parse(FILES[module].read_text(), str(FILES[module]))
    found: list[Import] = []

    def visit(node: ast.AST, deferred: bool, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                found.append(Import(module, a.name, (), node.lineno, deferred, type_only))
            return
        if isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            plain: list[str] = []
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in MODULES:  # ``from pkg import submodule``
                    found.append(Import(module, sub, (a.name,), node.lineno, deferred,
                                        type_only, base))
                else:
                    plain.append(a.name)
            if plain:
                found.append(Import(module, base, tuple(plain), node.lineno, deferred,
                                    type_only))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, deferred, True)
            for child in node.orelse:
                visit(child, deferred, type_only)
            return
        inner = deferred or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                              ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_only)

    visit(tree, False, False)
    return found


IMPORTS: list[Import] = [imp for m in sorted(MODULES) for imp in _imports_of(m)]


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _report(bad: list[Import], rule: str) -> str:
    return f"{len(bad)} import(s) break the rule: {rule}\n" + "\n".join(f"  {i}" for i in bad)


# -- the layer rules -------------------------------------------------------------------------

#: what sits above the sans-IO cores and the codecs: nothing there may be imported from below
UPPER = (
    "wirecall.transport", "wirecall.server", "wirecall.client", "wirecall.sync",
    "wirecall.cluster", "wirecall.streaming.handler", "wirecall.seam", "wirecall.service",
    "wirecall.interceptors", "wirecall.pubsub", "wirecall.observability", "wirecall.txn",
    "wirecall.idgen", "wirecall.cli", "wirecall.tutorial", "wirecall.gen",
)
IO_MODULES = ("asyncio", "socket", "ssl", "selectors")
#: the feature rooms: they reach wires through the client and server APIs only
ROOMS = ("wirecall.cluster", "wirecall.pubsub", "wirecall.observability", "wirecall.txn",
         "wirecall.idgen")
#: all a transport may import from wirecall outside ``wirecall.transport``
TRANSPORT_MAY_IMPORT = (
    "wirecall.transport", "wirecall.seam", "wirecall.streaming.model", "wirecall.context",
    "wirecall.errors", "wirecall.status", "wirecall.codec", "wirecall.protocol",
    "wirecall.limits",
)


def _protocol_rule(i: Import) -> bool:
    return _in(i.module, "wirecall.protocol") and (
        _in(i.target, *IO_MODULES) or _in(i.target, *UPPER) or i.target == "wirecall")


def _codec_rule(i: Import) -> bool:
    return _in(i.module, "wirecall.codec") and (
        _in(i.target, "wirecall.protocol", *UPPER) or i.target == "wirecall")


def _transport_rule(i: Import) -> bool:
    return (_in(i.module, "wirecall.transport") and _in(i.target, "wirecall")
            and not _in(i.target, *TRANSPORT_MAY_IMPORT))


def _room_rule(i: Import) -> bool:
    return (_in(i.module, *ROOMS) and _in(i.target, "wirecall.transport")
            and i.target not in ("wirecall.transport", "wirecall.transport.base"))


def _private_rule(i: Import) -> bool:
    """``from wirecall.x import _name`` (or a ``_module``) from another module."""
    if not _in(i.target, "wirecall") or i.target == i.module:
        return False
    private_module = any(p.startswith("_") and not p.startswith("__")
                         for p in i.target.split("."))
    if private_module and not _in(i.module, i.target.rsplit(".", 1)[0]):
        return True
    return any(n.startswith("_") and not n.startswith("__") for n in i.names)


RULES: dict[str, tuple[str, Callable[[Import], bool]]] = {
    "protocol": ("protocol cores (wirecall.protocol.*) import no asyncio/socket/ssl/selectors "
                 "and nothing from transport, server, client, sync, cluster, the streaming "
                 "handler or anything above them", _protocol_rule),
    "codec": ("codecs (wirecall.codec.*) import no protocol, transport, server, client or "
              "anything above them", _codec_rule),
    "transport": ("transports (wirecall.transport.*) import from the rest of wirecall only "
                  + ", ".join(TRANSPORT_MAY_IMPORT[1:])
                  + " (not server, service, interceptors, gen, observability, cluster, pubsub, "
                  "client, the streaming handler or the wirecall package itself)",
                  _transport_rule),
    "rooms": ("feature rooms (" + ", ".join(ROOMS) + ") import no transport internals "
              "(only wirecall.transport.base is public)", _room_rule),
    "private": ("no `from x import _private` across modules", _private_rule),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_layer_rule(rule: str) -> None:
    text, breaks = RULES[rule]
    bad = [i for i in IMPORTS if breaks(i)]
    if bad:
        pytest.fail(_report(bad, text), pytrace=False)


def test_the_graph_is_read() -> None:
    """The reader sees what the rules rely on (else every rule would pass vacuously)."""
    by_module = {i.module for i in IMPORTS}
    assert {"wirecall", "wirecall.server", "wirecall.cli"} <= by_module
    assert any(i.target == "wirecall.server" for i in IMPORTS)
    assert any(i.deferred for i in IMPORTS) and any(i.type_only for i in IMPORTS)
    assert any(_in(m, "wirecall.protocol") for m in MODULES)
    assert any(_in(m, "wirecall.transport") for m in MODULES)


def test_the_rules_catch_what_they_should() -> None:
    """Each rule flags a made-up offending import (so a typo in a prefix cannot make it
    vacuous)."""
    def imp(module: str, target: str, *names: str) -> Import:
        return Import(module, target, names, 1, False, False)

    assert _protocol_rule(imp("wirecall.protocol.frames", "asyncio"))
    assert _protocol_rule(imp("wirecall.protocol.frames", "wirecall.transport.base"))
    assert not _protocol_rule(imp("wirecall.protocol.frames", "wirecall.errors"))
    assert _codec_rule(imp("wirecall.codec.gob.decoder", "wirecall.protocol.netrpc"))
    assert not _codec_rule(imp("wirecall.codec.gob.decoder", "wirecall.codec.gob.types"))
    assert _transport_rule(imp("wirecall.transport.native.server", "wirecall.server"))
    assert _transport_rule(imp("wirecall.transport.native.server", "wirecall.streaming"))
    assert not _transport_rule(imp("wirecall.transport.native.server", "wirecall.seam"))
    assert not _transport_rule(imp("wirecall.transport.native.server",
                                   "wirecall.streaming.model"))
    assert _room_rule(imp("wirecall.cluster.pool", "wirecall.transport.native.client"))
    assert not _room_rule(imp("wirecall.cluster.pool", "wirecall.transport.base"))
    assert _private_rule(imp("wirecall.protocol.gojsonrpc", "wirecall.codec.gob.decoder",
                             "_zero_factory"))
    assert not _private_rule(imp("wirecall.codec.gob.decoder", "wirecall.codec.gob.types",
                                 "__all__"))


# -- cycles --------------------------------------------------------------------------------


def _graph(with_deferred: bool) -> dict[str, dict[str, Import]]:
    graph: dict[str, dict[str, Import]] = {m: {} for m in MODULES}
    for i in IMPORTS:
        if (i.target in MODULES and i.target != i.module and not i.type_only
                and (with_deferred or not i.deferred)):
            graph[i.module].setdefault(i.target, i)
    return graph


def _describe_cycles(graph: dict[str, dict[str, Import]]) -> list[str]:
    lines: list[str] = []
    for cycle in _cycles(graph):
        ring = [*cycle, cycle[0]]
        lines.append(" -> ".join(ring))
        lines.extend(f"    {graph[a][b]}" for a, b in itertools.pairwise(ring))
    return lines


def _cycles(graph: dict[str, dict[str, Import]]) -> Iterator[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    for comp in components:
        members = set(comp)
        start = min(comp)
        # breadth-first from start back to start, inside the component: a shortest cycle
        prev: dict[str, str] = {}
        frontier = [start]
        found = False
        while frontier and not found:
            nxt: list[str] = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w not in members:
                        continue
                    if w == start:
                        prev[start] = v
                        found = True
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found:
                    break
            frontier = nxt
        back: list[str] = []
        v = prev[start]
        while v != start:
            back.append(v)
            v = prev[v]
        yield [start, *reversed(back)]


def test_no_import_cycles() -> None:
    lines = _describe_cycles(_graph(with_deferred=False))
    if lines:
        pytest.fail("import cycles (imports run at import time):\n" + "\n".join(lines),
                    pytrace=False)


def test_no_cycle_kept_alive_by_a_deferred_import() -> None:
    """A function-level import that closes a cycle only hides it (server <-> streaming and
    tcp <-> tcp_stream were such cycles): the graph with deferred imports has none either."""
    lines = _describe_cycles(_graph(with_deferred=True))
    if lines:
        pytest.fail("import cycles through deferred imports:\n" + "\n".join(lines),
                    pytrace=False)


def test_the_cycle_finder_finds_a_cycle() -> None:
    def edge(a: str, b: str) -> Import:
        return Import(a, b, (), 1, False, False)

    graph = {"a": {"b": edge("a", "b")}, "b": {"c": edge("b", "c")},
             "c": {"a": edge("c", "a")}, "d": {"a": edge("d", "a")}}
    assert list(_cycles(graph)) == [["a", "b", "c"]]


# -- sizes ---------------------------------------------------------------------------------

MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 100
#: measured hot loops allowed to be longer, "module:qualname" -> why (say it in
#: docs/architecture.md too). Starts empty: add an entry only with a benchmark behind it.
LONG_FUNCTIONS_ALLOWED: dict[str, str] = {
    # the native parser's compact loop for plain REQUEST/RESPONSE frames: one pass over the
    # buffer with the header fields in locals; split, it pays a Python call per frame (the
    # sequential benchmark is cold-CPU bound: docs/architecture.md, "Measured hot loops")
    "wirecall.protocol.frames:FrameConnection._frames": "measured hot parser loop",
}


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def _files_now() -> dict[str, Path]:
    """The modules as they are when the test runs (not when it was collected)."""
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def test_no_module_over_800_lines() -> None:
    files = _files_now()
    long = {m: n for m, p in files.items()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    if long:
        pytest.fail(f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(
            f"  {m}: {n} lines ({files[m].relative_to(SRC.parent)})"
            for m, n in sorted(long.items(), key=lambda kv: -kv[1])), pytrace=False)


def test_no_function_over_100_lines() -> None:
    long: dict[str, int] = {}
    for m, p in _files_now().items():
        for qualname, node in _functions(ast.parse(p.read_text())):
            n = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined,operator]
            if n > MAX_FUNCTION_LINES and f"{m}:{qualname}" not in LONG_FUNCTIONS_ALLOWED:
                long[f"{m}:{qualname}"] = n
    if long:
        pytest.fail(f"functions over {MAX_FUNCTION_LINES} lines (not in the allow-list):\n"
                    + "\n".join(f"  {k}: {n} lines"
                                 for k, n in sorted(long.items(), key=lambda kv: -kv[1])),
                    pytrace=False)


def test_the_allow_list_names_functions_that_exist() -> None:
    names = {f"{m}:{q}" for m, p in _files_now().items()
             for q, _ in _functions(ast.parse(p.read_text()))}
    assert set(LONG_FUNCTIONS_ALLOWED) <= names
