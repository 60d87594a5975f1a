"""Turn a tree of Python source files into a BEIR code-search folder (``embedtune prepare code``).

Each documented public function or public method of a public class gives one pair (see
:mod:`embedtune.data.builders.python_code`): the first sentence of its docstring is the query, its source without
the docstring the one relevant document. Functions whose query, document or id occurs twice in the tree are dropped.

Splits are by *top-level package or module* (``pkg`` for ``pkg.sub.mod``; a leading ``src`` folder that is not
itself a package is skipped, so ``src/pkg/mod.py`` counts as ``pkg``): every function of one top-level package lands
in one split, so no module, and no near-duplicate sibling function, is shared between training and evaluation
(:func:`~embedtune.data.builders.documents.assign_source_splits`, seeded). When every function lies in one package
(a repository of one project), its sub-packages and modules are the units split instead, one level further down
for as long as all functions share the prefix (:func:`split_units`). The same tree, seed and settings always give
the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embedtune.data.builders.beir_folder import check_destination, write_beir_folder
from embedtune.data.builders.documents import SPLITS, assign_source_splits
from embedtune.data.builders.python_code import (
    DEFAULT_EXCLUDED_DIRS,
    CodeFunction,
    drop_ambiguous,
    functions_of,
    iter_python_modules,
    parse_source,
)
from embedtune.data.builders.squad import check_split_fractions
from embedtune.data.types import Qrels
from embedtune.errors import DataError, reading

DEFAULT_SEED = 42
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
"""Default share of top-level packages per split (train, dev, test)."""

SOURCE_FOLDERS = ("src",)
"""Layout folders skipped in module names when they are not packages themselves (``src/pkg`` -> ``pkg``)."""


@dataclass(frozen=True)
class CodeSplitCounts:
    """Size of one split.

    Attributes:
        packages: Top-level packages or modules whose functions are in the split.
        queries: Queries judged in the split.
    """

    packages: int
    queries: int


@dataclass
class CodeSummary:
    """What :func:`build_code_beir` read, dropped and wrote.

    Attributes:
        source: The folder read.
        out: The BEIR folder written.
        seed: Seed of the split.
        fractions: Share of top-level packages for train, dev and test.
        modules: Python modules found.
        unreadable: Relative paths of the modules that could not be read, decoded or parsed (skipped).
        functions: Documented public functions with a usable query and document.
        ambiguous: Of those, functions dropped because their query, document or id occurs twice.
        splits: Split name -> its counts, for the splits written.
    """

    source: Path
    out: Path
    seed: int
    fractions: tuple[float, ...]
    modules: int = 0
    unreadable: list[str] = field(default_factory=list)
    functions: int = 0
    ambiguous: int = 0
    splits: dict[str, CodeSplitCounts] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Return the summary as lines of text for the terminal.

        Returns:
            A headline naming the source, the folder and the settings, the counts, the unreadable files (at most 5
            by name), then a table of packages and queries per split.
        """
        shares = "/".join(f"{fraction:g}" for fraction in self.fractions)
        lines = [
            f"Wrote {self.out} from {self.source} (seed {self.seed}, fractions {shares})",
            f"modules: {self.modules} ({len(self.unreadable)} unreadable, skipped)",
            f"functions: {self.functions} ({self.ambiguous} with a repeated query or body dropped), "
            f"queries: {self.functions - self.ambiguous}",
        ]
        lines.extend(f"skipped {path}: cannot be read or parsed" for path in self.unreadable[:5])
        if len(self.unreadable) > 5:
            lines.append(f"... and {len(self.unreadable) - 5} more unreadable modules")
        lines.append(f"{'split':<6} {'packages':>9} {'queries':>9}")
        lines.extend(f"{name:<6} {counts.packages:>9} {counts.queries:>9}" for name, counts in self.splits.items())
        return lines


def package_modules(root: Path, excluded_dirs: Collection[str]) -> list[tuple[str, Path]]:
    """List a tree's modules, named as imported: a leading :data:`SOURCE_FOLDERS` folder is dropped.

    Args:
        root: The folder read.
        excluded_dirs: Folder names never entered (see
            :func:`~embedtune.data.builders.python_code.iter_python_modules`).

    Returns:
        ``(dotted module name, path)`` pairs sorted by path; ``src/pkg/mod.py`` is ``pkg.mod`` unless
        ``src/__init__.py`` exists.
    """
    modules = []
    for module, path in iter_python_modules(root, excluded_dirs):
        head, _, rest = module.partition(".")
        if head in SOURCE_FOLDERS and rest and not (root / head / "__init__.py").is_file():
            module = rest
        modules.append((module, path))
    return modules


def split_units(modules: Iterable[str]) -> dict[str, str]:
    """Name the unit each module is split with: its top-level package, below the prefix all modules share.

    Args:
        modules: Dotted module names.

    Returns:
        Module -> unit: the first ``k + 1`` components of its name, where ``k`` is the number of leading components
        all the modules share (a module no longer than ``k`` components is its own unit). ``{"a.x", "b.y"}`` gives
        ``a`` and ``b``; ``{"pkg", "pkg.cli.main", "pkg.data"}`` gives ``pkg``, ``pkg.cli`` and ``pkg.data``.
    """
    names = sorted(set(modules))
    parts = [name.split(".") for name in names]
    shared = len(os.path.commonprefix(parts)) if parts else 0  # works on lists of components too
    return {name: ".".join(part[: shared + 1]) for name, part in zip(names, parts, strict=True)}


def build_code_beir(
    source: str | Path,
    out: str | Path,
    *,
    seed: int = DEFAULT_SEED,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    exclude: Collection[str] = (),
    overwrite: bool = False,
) -> CodeSummary:
    """Build a BEIR code-search folder from a tree of Python files (see the module docstring).

    Args:
        source: The folder of Python files, read recursively (hidden folders and
            :data:`~embedtune.data.builders.python_code.DEFAULT_EXCLUDED_DIRS` skipped).
        out: The BEIR folder to create.
        seed: Seed of the split.
        fractions: Share of top-level packages for train, dev and test; a split with share 0 gets no qrels file.
        exclude: More folder names never entered (e.g. ``tests``).
        overwrite: Replace an existing BEIR folder at ``out``.

    Returns:
        The counts of what was read, dropped and written.

    Raises:
        DataError: if ``source`` is not a folder, holds no usable function, or has fewer top-level packages with
            functions than splits to fill.
        ValueError: for invalid fractions.
        FileExistsError: if ``out`` exists and may not be replaced.
        OSError: if the folder cannot be written.
    """
    shares = check_split_fractions(fractions)
    source, out = Path(source), Path(out)
    check_destination(out, overwrite)
    with reading(source):
        if not source.is_dir():
            raise DataError(source, None, None, "not a folder" if source.exists() else "folder not found")
        modules = package_modules(source, DEFAULT_EXCLUDED_DIRS | frozenset(exclude))
    summary = CodeSummary(source, out, seed, shares, modules=len(modules))
    found: list[CodeFunction] = []
    for module, path in modules:
        parsed = parse_source(path)
        if parsed is None:
            summary.unreadable.append(path.relative_to(source).as_posix())
            continue
        found.extend(functions_of(parsed[0], parsed[1], module))
    functions = drop_ambiguous(found)
    summary.functions, summary.ambiguous = len(found), len(found) - len(functions)
    if not functions:
        message = f"no documented public function found in {len(modules)} Python modules"
        raise DataError(source, None, None, message)
    unit_of = split_units(function.module for function in functions)
    try:
        assignment = assign_source_splits(unit_of.values(), shares, seed, unit="packages or modules with functions")
    except ValueError as error:
        raise DataError(source, None, None, str(error)) from None
    qrels: dict[str, Qrels] = {name: {} for name, share in zip(SPLITS, shares, strict=True) if share > 0}
    for function in functions:
        qrels[assignment[unit_of[function.module]]][function.query_id] = {function.doc_id: 1}
    for name, split_qrels in qrels.items():
        packages = sum(1 for split in assignment.values() if split == name)
        summary.splits[name] = CodeSplitCounts(packages, len(split_qrels))
    metadata = [{"module": function.module, "function": function.qualname} for function in functions]
    corpus = [
        {"_id": function.doc_id, "title": "", "text": function.document, "metadata": meta}
        for function, meta in zip(functions, metadata, strict=True)
    ]
    queries = [
        {"_id": function.query_id, "text": function.query, "metadata": meta}
        for function, meta in zip(functions, metadata, strict=True)
    ]
    write_beir_folder(out, corpus, queries, qrels, overwrite=overwrite)
    return summary
