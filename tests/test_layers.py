"""The package's layers: which part of embedtune may import which, no import cycles, no hidden imports.

A module imports, at module level, only its own package and the layers below it (:data:`LAYERS`, lowest first;
parts sharing a layer do not import each other). An import inside a function is allowed only for an optional or
heavy dependency and carries a comment saying which (on its line or the line above). ``if TYPE_CHECKING:`` imports
are annotations only and do not count. docs/architecture.md draws the same table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "embedtune"

LAYERS: list[set[str]] = [
    {"errors"},
    {"io", "model_paths", "versions"},
    {"losses"},  # torch modules and the torch-free objective registry the configuration reads
    {"config"},
    {"runs"},
    {"data"},
    {"models"},
    {"cache"},
    {"search"},
    {"mining"},
    {"evaluation"},
    {"export"},  # embedtune export: a run's model as a sentence-transformers folder or a checked ONNX graph
    {"training"},
    {"tuning"},  # embedtune tune: studies whose trials are training runs
    {"serving"},  # embedtune serve: the HTTP API over a search index
    {"cli"},
    {"__main__", "__init__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """``embedtune.data.beir`` -> ``data``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(module: str) -> int:
    part = part_of(module)
    for number, parts in enumerate(LAYERS):
        if part in parts:
            return number
    raise AssertionError(f"{module}: part {part!r} is in no layer of LAYERS")


def is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imported(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """The embedtune modules an import statement names (``from embedtune import runs`` -> ``embedtune.runs``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("embedtune")]
    if node.level:  # relative imports are not used in embedtune
        raise AssertionError(f"{module}: relative import on line {node.lineno}")
    base = node.module or ""
    if not base.startswith("embedtune"):
        return []
    names = [f"{base}.{alias.name}" for alias in node.names]
    return [name if is_module(name) else base for name in names]


def is_module(name: str) -> bool:
    path = SRC / Path(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def scan(path: Path) -> tuple[list[tuple[str, int]], list[tuple[ast.AST, bool]]]:
    """Return the module-level embedtune imports ``(target, line)`` and every function-level import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = module_name(path)
    top: list[tuple[str, int]] = []
    inner: list[ast.AST] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and not in_function and is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if in_function:
                    inner.append(child)
                else:
                    top.extend((target, child.lineno) for target in imported(child, module))
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, inner


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
SCANS = {module: scan(path) for module, path in MODULES.items()}


def test_every_part_of_the_package_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    own = part_of(module)
    for target, line in SCANS[module][0]:
        other = part_of(target)
        if other == own:
            continue
        assert layer_of(target) < layer_of(module), (
            f"{module} (layer {own}) imports {target} (layer {other}) on line {line}: an upward or sideways import"
        )


def test_no_import_cycles_between_modules():
    graph = {
        module: {target for target, _ in SCANS[module][0] if target in MODULES and target != module}
        for module in MODULES
    }
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph[module]):
            walk(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_inside_functions_say_which_dependency_they_defer(module):
    lines = MODULES[module].read_text(encoding="utf-8").splitlines()
    for node in SCANS[module][1]:
        here, above = lines[node.lineno - 1], node.lineno - 2
        while lines[above].strip().startswith(("from ", "import ")):  # a block of imports under one comment
            above -= 1
        assert "#" in here or lines[above].strip().startswith("#"), (
            f"{MODULES[module].relative_to(SRC.parent)}:{node.lineno}: an import inside a function needs a comment "
            f"naming the optional or heavy dependency it defers: {here.strip()}"
        )


def test_the_checks_catch_what_they_forbid(tmp_path):
    bad = tmp_path / "embedtune" / "data" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from embedtune.training import pipeline\n\n\ndef f():\n    import torch\n")
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        top, inner = scan(bad)
    finally:
        SRC = saved
    assert [target for target, _ in top] == ["embedtune.training"] and len(inner) == 1
    assert layer_of("embedtune.training.pipeline") > layer_of("embedtune.data.bad")


def test_the_version_is_the_one_pyproject_declares():
    import tomllib

    from embedtune import __version__

    project = tomllib.loads((SRC.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert __version__ == project["version"]
