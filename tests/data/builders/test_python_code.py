from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.data.beir import load_beir
from embedtune.data.builders.code_beir import build_code_beir, package_modules, split_units
from embedtune.data.builders.python_code import (
    DEFAULT_EXCLUDED_DIRS,
    CodeFunction,
    drop_ambiguous,
    extract_functions,
    iter_python_modules,
)
from embedtune.errors import DataError

PACKAGES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")


def function_source(name: str, summary: str) -> str:
    return f'''
def {name}(value):
    """{summary} More detail follows here.

    Args:
        value: the input.
    """
    result = value + {len(name)}
    return result
'''


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_project(folder: Path) -> Path:
    for package in PACKAGES:
        write(folder, f"{package}/__init__.py", function_source(f"{package}_init", f"Start the {package} engine now."))
        sub = function_source(f"{package}_load", f"Load every {package} record from disk.")
        sub += function_source(f"{package}_save", f"Save the {package} records back to disk.")
        write(folder, f"{package}/io/files.py", sub)
    return folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }


def test_iter_python_modules_on_a_user_tree(tmp_path: Path) -> None:
    for relative in [
        "pkg/__init__.py",
        "pkg/_internal.py",
        "pkg/__main__.py",
        "scripts/run-job.py",
        "bad name/x.py",
        ".venv/lib/site.py",
        "venv/lib/thing.py",
        "node_modules/x/y.py",
        "pkg/notes.txt",
    ]:
        write(tmp_path, relative, "")
    assert iter_python_modules(tmp_path) == [
        ("pkg", tmp_path / "pkg/__init__.py"),
        ("pkg.__main__", tmp_path / "pkg/__main__.py"),
        ("pkg._internal", tmp_path / "pkg/_internal.py"),
        ("scripts.run-job", tmp_path / "scripts/run-job.py"),
    ]
    assert [name for name, _ in iter_python_modules(tmp_path, public_only=True)] == ["pkg"]
    assert iter_python_modules(tmp_path / "pkg", DEFAULT_EXCLUDED_DIRS)[0] == ("pkg", tmp_path / "pkg/__init__.py")


def test_package_modules_skip_a_src_layout_folder(tmp_path: Path) -> None:
    write(tmp_path, "src/pkg/core.py", "")
    write(tmp_path, "tools/src/helper.py", "")
    assert [name for name, _ in package_modules(tmp_path, DEFAULT_EXCLUDED_DIRS)] == ["pkg.core", "tools.src.helper"]
    write(tmp_path, "src/__init__.py", "")
    assert "src.pkg.core" in [name for name, _ in package_modules(tmp_path, DEFAULT_EXCLUDED_DIRS)]


def test_split_units_descend_below_a_shared_package() -> None:
    assert split_units(["a.x", "b.y.z", "b"]) == {"a.x": "a", "b": "b", "b.y.z": "b"}
    assert split_units(["pkg", "pkg.cli.main", "pkg.data"]) == {
        "pkg": "pkg",
        "pkg.cli.main": "pkg.cli",
        "pkg.data": "pkg.data",
    }
    assert split_units(["one.module"]) == {"one.module": "one.module"}


def test_drop_ambiguous_drops_repeated_queries_bodies_and_ids() -> None:
    def function(module: str, name: str, query: str, document: str) -> CodeFunction:
        return CodeFunction(module=module, qualname=name, query=query, document=document)

    kept = function("m", "keep", "Keep this one please.", "def keep(): pass")
    functions = [
        function("m", "b", "Same query text here.", "body b"),
        function("m", "c", "same QUERY text here.", "body c"),
        function("m", "d", "Query d is unique.", "shared body"),
        function("m", "e", "Query e is unique.", "shared body"),
        function("n", "f", "Query f is unique.", "body f"),
        function("n", "f", "Query f2 is unique.", "body f2"),
        kept,
    ]
    assert drop_ambiguous(functions) == [kept]


def test_extract_functions_strips_the_docstring(tmp_path: Path) -> None:
    path = write(tmp_path, "m.py", function_source("compute", "Compute the result for a value."))
    (function,) = extract_functions(path, "m")
    assert function.query == "Compute the result for a value."
    assert function.document == "def compute(value):\n    result = value + 7\n    return result"


def test_build_code_beir_splits_by_package_without_leakage(tmp_path: Path) -> None:
    source = make_project(tmp_path / "project")
    write(source, "alpha/copy.py", function_source("alpha_copy", "Save the alpha records back to disk."))
    write(source, "bravo/broken.py", "def broken(:\n")
    write(source, "tests/test_alpha.py", function_source("test_it", "Check that alpha loads its records."))
    summary = build_code_beir(source, tmp_path / "out", seed=5, exclude=["tests"])
    data = load_beir(tmp_path / "out")
    assert set(data.qrels) == {"train", "dev", "test"}
    queries = {record["_id"]: record for record in read_jsonl(tmp_path / "out" / "queries.jsonl")}
    packages: dict[str, set[str]] = {}
    for split, qrels in data.qrels.items():
        for query_id, judged in qrels.items():
            assert judged == {"d:" + query_id.removeprefix("q:"): 1}
            packages.setdefault(queries[query_id]["metadata"]["module"].split(".")[0], set()).add(split)
            assert queries[query_id]["text"] not in data.corpus["d:" + query_id.removeprefix("q:")]
    assert set(packages) == set(PACKAGES)
    assert all(len(splits) == 1 for splits in packages.values())
    assert summary.unreadable == ["bravo/broken.py"]
    assert (summary.functions, summary.ambiguous) == (3 * len(PACKAGES) + 1, 2)  # alpha_save and its copy
    assert len(data.queries) == 3 * len(PACKAGES) - 1
    assert not any("test_it" in query_id for query_id in data.queries)
    assert sum(counts.queries for counts in summary.splits.values()) == len(data.queries)
    build_code_beir(source, tmp_path / "again", seed=5, exclude=["tests"])
    assert folder_bytes(tmp_path / "out") == folder_bytes(tmp_path / "again")


def test_one_package_tree_is_split_by_its_sub_packages(tmp_path: Path) -> None:
    source = tmp_path / "repo"
    for package in PACKAGES:
        write(source, f"src/app/{package}/core.py", function_source(f"{package}_run", f"Run the {package} step once."))
    build_code_beir(source, tmp_path / "out", fractions=(0.5, 0.5, 0.0))
    data = load_beir(tmp_path / "out")
    assert set(data.qrels) == {"train", "dev"}
    units = {split: {query_id.split(".")[1] for query_id in qrels} for split, qrels in data.qrels.items()}
    assert units["train"] and units["dev"] and not units["train"] & units["dev"]
    assert all(query_id.startswith("q:app.") for query_id in data.queries)


def test_code_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        build_code_beir(tmp_path / "missing", tmp_path / "out")
    write(tmp_path, "empty/a.py", "x = 1\n")
    with pytest.raises(DataError, match="no documented public function"):
        build_code_beir(tmp_path / "empty", tmp_path / "out")
    write(tmp_path, "two/a.py", function_source("run_a", "Run the first thing now."))
    write(tmp_path, "two/b.py", function_source("run_b", "Run the second thing now."))
    with pytest.raises(DataError, match="need at least 3 packages or modules"):
        build_code_beir(tmp_path / "two", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    source = make_project(tmp_path / "project")
    build_code_beir(source, tmp_path / "out")
    with pytest.raises(FileExistsError):
        build_code_beir(source, tmp_path / "out")
