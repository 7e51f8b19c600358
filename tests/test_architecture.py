"""The import structure of the source: layers, no cycles, no private names across layers.

Walks ``edgekit/``, ``converters/``, ``runtimes/`` and ``apps/`` (installed as ``edgekit``,
``edgekit.converters``, ``edgekit.runtimes``, ``edgekit.apps``) with :mod:`ast`; nothing is
imported. The rules (docs/layers.md states them for readers):

(a) No cycle among module-level imports. An import is module-level when it runs when the module
    is imported: at the top, or inside a top-level ``if``/``try``/``with`` or a class body (not
    under ``if TYPE_CHECKING:``). Imports inside functions run when the function is called and
    may close a loop (that is how heavy or optional libraries are kept out of ``import edgekit``).
(b) A lower layer never imports a higher one at module level (:data:`LAYERS`, lowest first);
    inside a function it may, only where :data:`LAZY_UPWARD` lists the pair and says why.
(c) Nothing below the CLI imports ``edgekit.cli``, at any level.
(d) A private name (a module, function, class or constant whose name starts with ``_``) is used
    only inside its own layer and source folder: ``from X import _y``, ``import X._y``,
    ``from X._y import z`` and ``X._y`` through an imported module are checked, where
    ``X`` is the owner of the private name. :data:`SHARED_INTERNAL` lists the few modules that are
    private to the distribution (not user API) but shared by every layer above them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"edgekit": "edgekit", "edgekit.converters": "converters", "edgekit.runtimes": "runtimes",
           "edgekit.apps": "apps"}

# Layers, lowest first: a module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # Shared by everything: errors, path safety, formatting, numeric bounds, the manifest schema.
    ("foundation", ("edgekit.errors", "edgekit._fs", "edgekit._fmt", "edgekit.numerics", "edgekit.schema")),
    # Model files, bundles and sessions: the readers of .tflite/.onnx/.ort files and Core ML specs,
    # the bundle manifest, the backends, load() and bench(). What a Raspberry Pi needs to run a bundle.
    ("runtimes", ("edgekit.runtimes", "edgekit.bundle")),
    # What works on a runtime-only install on top of the runtimes: inspect, lint and its readers,
    # target profiles, the model zoo's cards, images, pre-processing, doctor, the package's lazy API.
    ("core", ("edgekit", "edgekit.inspect", "edgekit.lint", "edgekit.targets", "edgekit.zoo", "edgekit.imageio",
              "edgekit.preprocess", "edgekit.doctor", "edgekit.assets")),
    # PyTorch/ONNX -> artifacts: capture, rewrite passes, exporters, verification, quantization.
    ("converters", ("edgekit.converters",)),
    # Applications built on the SDK (the camera demo).
    ("apps", ("edgekit.apps",)),
    # The command line, on top of everything.
    ("cli", ("edgekit.cli", "edgekit.__main__")),
]

# Modules private to the distribution (a leading underscore: not user API) that every layer at or
# above theirs may import.
SHARED_INTERNAL = {
    "edgekit._fs": "path safety: contained_path, atomic writes, regular_file... (one implementation for all)",
    "edgekit._fmt": "human_size and other formatting shared by the CLI and the converters' messages",
}

# (importer module, imported module or package): function-level imports from a lower layer into a
# higher one, each with the reason it cannot go the other way.
LAZY_UPWARD: dict[tuple[str, str], str] = {
    ("edgekit.targets", "edgekit.converters.passes"):
        "a profile's pipeline is checked against the pass registry when the profile loads; the registry is "
        "plain data (no model library) and names the passes the profiles list",
    ("edgekit.rknn", "edgekit.converters.verify"):
        "rknn-toolkit2's simulator is judged on the inputs and with the metrics verification uses (one case "
        "generator, one compare); compiling for a Rockchip NPU needs the conversion install anyway",
}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported (a submodule when ``from X import submodule``)
    names: tuple[str, ...]  # the dotted paths of the names used: "X.y" for ``from X import y``, "X._y" for attributes
    line: int
    module_level: bool

    def where(self) -> str:
        return f"{self.importer}:{self.line}"


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([package, *parts])] = path
    return mods


MODULES = _modules()


def folder_of(module: str) -> str:
    """The source folder a module lives in (edgekit, converters, runtimes, apps)."""
    best = max((p for p in SOURCES if module == p or module.startswith(p + ".")), key=len)
    return SOURCES[best]


def layer_of(module: str) -> int:
    best, index = "", -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, index = p, i
    assert index >= 0, f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py"
    return index


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(importer: str, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if _is_package(importer) else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(body: list[ast.stmt], module_level: bool):
    """``(node, module_level)`` for every import statement and every attribute expression."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, module_level
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in node.decorator_list:
                yield from _attributes(d, module_level)
            yield from _walk(node.body, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.orelse, module_level)
        else:  # class bodies and if/try/with/for/while/match blocks run with the code around them
            for _, value in ast.iter_fields(node):
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, ast.stmt):
                        yield from _walk([item], module_level)
                    elif isinstance(item, (ast.excepthandler, ast.match_case)):
                        yield from _walk(item.body, module_level)
                    elif isinstance(item, ast.expr):
                        yield from _attributes(item, module_level)


def _attributes(expr: ast.expr, module_level: bool):
    for node in ast.walk(expr):
        if isinstance(node, ast.Attribute):
            yield node, module_level


def _imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))
    out: list[Import] = []
    aliases: dict[str, str] = {}  # local name -> module it is bound to
    attributes: list[tuple[ast.Attribute, bool]] = []
    for node, module_level in _walk(tree.body, True):
        if isinstance(node, ast.Import):
            for a in node.names:
                if not a.name.startswith("edgekit"):
                    continue
                out.append(Import(module, a.name, (a.name,), node.lineno, module_level))
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module)
            if not base.startswith("edgekit"):
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                target = full if full in MODULES else base
                out.append(Import(module, target, (full,), node.lineno, module_level))
                if full in MODULES:
                    aliases[a.asname or a.name] = full
        else:
            attributes.append((node, module_level))
    # X._private through an imported module: resolve attribute chains rooted at an alias.
    for attr, module_level in attributes:
        chain: list[str] = []
        node: ast.expr = attr
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in aliases:
            continue
        dotted = ".".join([aliases[node.id], *reversed(chain)])
        if any(p.startswith("_") and not p.startswith("__") for p in dotted.split(".")):
            out.append(Import(module, aliases[node.id], (dotted,), attr.lineno, module_level))
    return out


IMPORTS = {m: _imports_of(m) for m in MODULES}


def _lazy_upward_allowed(importer: str, target: str) -> bool:
    return any(importer == a and (target == b or target.startswith(b + ".")) for a, b in LAZY_UPWARD)


def _private_owner(dotted: str) -> tuple[str, str] | None:
    """``(owner, private)`` for the first private component of a dotted path, skipping the
    shared internal modules; None when nothing in it is private."""
    parts = dotted.split(".")
    for i, p in enumerate(parts):
        if i and p.startswith("_") and not p.startswith("__"):
            private = ".".join(parts[: i + 1])
            if private in SHARED_INTERNAL:
                continue
            return ".".join(parts[:i]), private
    return None


# -- the checks ----------------------------------------------------------------------------------

def test_every_module_has_a_layer():
    for m in MODULES:
        layer_of(m)


def test_no_import_cycle_at_module_level():
    graph = {m: sorted({i.target for i in IMPORTS[m] if i.module_level and i.target in MODULES and i.target != m})
             for m in MODULES}
    cycles = _cycles(graph)
    assert not cycles, "module-level import cycles (make one import lazy or move the shared code down):\n" + \
        "\n".join(" -> ".join([*c, c[0]]) for c in cycles)


def test_lower_layers_do_not_import_higher_ones():
    bad = []
    for m, imports in IMPORTS.items():
        for i in imports:
            if i.target not in MODULES and not any(i.target.startswith(p) for p in SOURCES):
                continue
            if layer_of(i.target) <= layer_of(m):
                continue
            if i.module_level or not _lazy_upward_allowed(m, i.target):
                kind = "at module level" if i.module_level else "in a function not listed in LAZY_UPWARD"
                bad.append(f"{i.where()} ({LAYERS[layer_of(m)][0]}) imports {i.target} "
                           f"({LAYERS[layer_of(i.target)][0]}) {kind}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_nothing_below_the_cli_imports_the_cli():
    cli = layer_of("edgekit.cli")
    bad = [f"{i.where()} imports {i.target}" for m, imports in IMPORTS.items() if layer_of(m) < cli
           for i in imports if i.target == "edgekit.cli" or i.target.startswith("edgekit.cli.")]
    assert not bad, "\n".join(bad)


def test_no_private_name_crosses_a_layer_or_source_folder():
    bad = []
    for m, imports in IMPORTS.items():
        for i in imports:
            for dotted in i.names:
                found = _private_owner(dotted)
                if found is None:
                    continue
                owner, private = found
                if owner in MODULES and folder_of(owner) == folder_of(m) and layer_of(owner) == layer_of(m):
                    continue
                if owner not in MODULES and (owner == m or not owner.startswith("edgekit")):
                    continue
                bad.append(f"{i.where()} uses {private} (private to {owner})")
    assert not bad, "\n".join(sorted(set(bad)))


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
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
                out.append(_one_cycle(graph, set(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _one_cycle(graph: dict[str, list[str]], comp: set[str]) -> list[str]:
    start = min(comp)
    path, seen = [start], {start}
    while True:
        nxt = next(w for w in graph[path[-1]] if w in comp)
        if nxt in seen:
            return path[path.index(nxt):]
        path.append(nxt)
        seen.add(nxt)


# -- the checker checks what it says ---------------------------------------------------------------

@pytest.mark.parametrize("source, expect", [
    ("from edgekit.inspect import _coreml_proto\n", "edgekit.inspect._coreml_proto"),
    ("import edgekit.inspect as ins\nx = ins._coreml_proto\n", "edgekit.inspect._coreml_proto"),
    ("def f():\n    from edgekit.runtimes._onnx_file import read_onnx\n", "edgekit.runtimes._onnx_file"),
    ("from edgekit._fs import contained_path\n", None),
    ("from edgekit.runtimes.modelfile import read_model\n", None),
])
def test_the_private_rule_sees_each_form(tmp_path, monkeypatch, source, expect):
    module = "edgekit.lint._probe"
    monkeypatch.setitem(MODULES, module, tmp_path / "probe.py")
    (tmp_path / "probe.py").write_text(source)
    found = [_private_owner(d) for i in _imports_of(module) for d in i.names]
    privates = [f[1] for f in found if f is not None]
    assert privates == ([expect] if expect else [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []
