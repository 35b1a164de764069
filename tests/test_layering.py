"""The import order of the house: data flow model (equations) -> backends (kernels) -> network
-> train -> tasks -> cli. A module may import from its own layer or the layers below, never
from a layer above, and no two modules may import each other (directly or through others).
Imports inside functions count, and so do ``importlib.import_module("...")`` strings."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: layer of each top-level part, lowest first; a module belongs to the longest prefix listed
LAYERS = {
    "spikesim": 0, "spikesim.errors": 0, "spikesim.options": 0,
    "spikesim.model": 1, "spikesim.data": 1, "spikesim.io": 1, "spikesim.metrics": 1,
    "spikesim.backends": 2,
    "spikesim.network": 3,
    "spikesim.train": 4, "spikesim.plots": 4, "spikesim.energy": 4,
    "spikesim.tasks": 5,
    "validation": 6, "spikesim.sweep": 6,
    "spikesim.cli": 7,
}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in LAYERS:
            return LAYERS[".".join(parts[:k])]
    raise KeyError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set:
    """The spikesim/validation modules that ``module``'s source imports (absolute names)."""
    out = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [stem] + [f"{stem}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [node.args[0].value]
        elif isinstance(node, ast.Dict):    # registries of module names (the CLI's TASKS)
            names = [v.value for v in node.values if isinstance(v, ast.Constant)
                     and isinstance(v.value, str) and v.value.startswith("spikesim.")]
        out |= {n for n in names if n.split(".")[0] in ("spikesim", "validation")}
    return out


def project_modules() -> dict:
    mods = {}
    for top in ("spikesim", "validation"):
        for path in sorted((ROOT / top).rglob("*.py")):
            mods[module_name(path)] = (path.read_text(), path.name == "__init__.py")
    return mods


def violations(mods: dict) -> list:
    """Upward imports and import cycles among ``mods`` (name -> (source, is_package))."""
    known = set(mods)
    graph = {}
    bad = []
    for name, (src, is_pkg) in mods.items():
        deps = set()
        for imp in imports_of(src, name, is_pkg):
            while imp not in known and "." in imp:     # `from pkg import name` of a non-module
                imp = imp.rpartition(".")[0]
            if imp in known and imp != name:
                deps.add(imp)
                if layer_of(imp) > layer_of(name):
                    bad.append(f"{name} (layer {layer_of(name)}) imports {imp} "
                               f"(layer {layer_of(imp)})")
        graph[name] = deps
    # cycles: a module that can reach itself (packages' __init__ re-exports excluded: a
    # package importing its own submodule is not a cycle unless the submodule imports back)
    for start in graph:
        stack, seen = [start], set()
        while stack:
            for nxt in graph[stack.pop()]:
                if nxt == start:
                    bad.append(f"import cycle through {start}")
                    stack = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
    return bad


def test_no_upward_imports_and_no_cycles():
    assert sorted(set(violations(project_modules()))) == []


def test_every_module_has_a_layer():
    for name in project_modules():
        layer_of(name)


@pytest.mark.parametrize("bad_source, module, expect", [
    ("from ..train import trainer\n", "spikesim.model.neurons", "imports spikesim.train"),
    ("from spikesim.tasks import ecg\n", "spikesim.network", "imports spikesim.tasks.ecg"),
    ("import importlib\nimportlib.import_module('spikesim.cli')\n", "spikesim.backends.cpu.lists",
     "imports spikesim.cli"),
    ("from . import surrogates\n", "spikesim.model.neurons", "cycle"),
])
def test_the_checker_fails_on_a_bad_import(bad_source, module, expect):
    """The check can fail: an upward import or a cycle injected into a copy of the tree."""
    mods = project_modules()
    src, is_pkg = mods[module]
    mods[module] = (src + "\n" + bad_source, is_pkg)
    if expect == "cycle":       # make surrogates import neurons, so that the two form a cycle
        s2, p2 = mods["spikesim.model.surrogates"]
        mods["spikesim.model.surrogates"] = (s2 + "\nfrom . import neurons\n", p2)
    assert any(expect in v for v in violations(mods)), violations(mods)
