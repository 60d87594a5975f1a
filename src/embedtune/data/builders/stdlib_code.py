"""The built-in demo data set: code retrieval over the Python standard library of the running interpreter.

The task: given a one-sentence description of what a function does, find that function's source code. Each public
function or public method of a public class in the standard library (``sysconfig.get_paths()["stdlib"]``) with a
docstring yields one pair (see :mod:`embedtune.data.builders.python_code`, which holds the general extraction):

* query: the first sentence of the docstring, e.g. ``"Return the canonical path of the specified filename."``;
* document: the function's source (decorators and ``def`` line included) with the docstring removed, so the answer
  cannot be found by copying the query text out of the document.

Clean-up: queries shorter than 4 or longer than 40 words, doctest-like or signature-like first lines, trivial bodies
(``pass``, one-line bodies) and every function whose query or document text occurs more than once in the standard
library (overrides sharing one docstring, copy-pasted helpers) are dropped, so each query has exactly one correct
document and no document answers two queries.

Anti-leak guarantee: the train/dev/test split is decided by a stable hash (SHA-256) of the *top-level package* name,
so a package and all its submodules (``email``, ``email.mime.text``, ...) land in one split. No module, and hence no
near-duplicate sibling function of the same package, is shared between training and evaluation. The set is
deterministic: the same standard library and the same arguments always give the same :class:`RetrievalSet`.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from embedtune.data.builders.python_code import (
    MAX_QUERY_WORDS,
    MIN_DOCUMENT_CODE_LINES,
    MIN_QUERY_WORDS,
    CodeFunction,
    drop_ambiguous,
    extract_functions,
    first_sentence,
    is_usable_query,
    iter_python_modules,
    strip_docstring,
)
from embedtune.data.splits import group_by_hash_split, hash_split, seeded_sample
from embedtune.data.types import RetrievalSet

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEFAULT_MAX_QUERIES",
    "EXCLUDED_DIRS",
    "MAX_QUERY_WORDS",
    "MIN_DOCUMENT_CODE_LINES",
    "MIN_QUERY_WORDS",
    "SPLITS",
    "CodeFunction",
    "assign_split",
    "build_stdlib_retrieval_set",
    "collect_stdlib_functions",
    "extract_functions",
    "first_sentence",
    "is_usable_query",
    "iter_stdlib_modules",
    "strip_docstring",
]

SPLITS = ("train", "dev", "test")
"""Split names, in the order of the ``fractions`` given to :func:`assign_split`."""

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
"""Default share of top-level packages per split (train, dev, test)."""

DEFAULT_MAX_QUERIES: Mapping[str, int] = {"train": 1200, "dev": 150, "test": 300}
"""Default cap on sampled functions per split; small enough to fine-tune a MiniLM on a laptop CPU in minutes."""

EXCLUDED_DIRS = frozenset(
    "site-packages dist-packages test tests idle_test idlelib lib2to3 tkinter turtledemo ensurepip __pycache__".split()
)
"""Folder names under the standard library whose modules are never used."""


def iter_stdlib_modules(stdlib_dir: Path | str | None = None) -> list[tuple[str, Path]]:
    """List the public pure-Python modules of the standard library.

    Skips :data:`EXCLUDED_DIRS` (tests, IDLE, tkinter, lib2to3, installed packages, ...), ``__main__.py`` files,
    folders that are not importable names and modules with a private component (``_foo``).

    Args:
        stdlib_dir: The standard library folder; defaults to the running interpreter's
            ``sysconfig.get_paths()["stdlib"]``.

    Returns:
        ``(dotted module name, path)`` pairs sorted by path; ``json/decoder.py`` becomes ``json.decoder`` and
        ``email/__init__.py`` becomes ``email``.
    """
    root = Path(stdlib_dir if stdlib_dir is not None else sysconfig.get_paths()["stdlib"])
    return iter_python_modules(root, EXCLUDED_DIRS, public_only=True)


def assign_split(module: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """Assign a module to a split by a stable hash of its top-level package name.

    Args:
        module: Dotted module name; only the part before the first dot counts, so ``email`` and
            ``email.mime.text`` always share a split.
        fractions: Expected share of top-level packages for ``("train", "dev", "test")``.

    Returns:
        ``"train"``, ``"dev"`` or ``"test"``.

    Raises:
        ValueError: if ``fractions`` is not three non-negative numbers summing to 1.
    """
    return hash_split(module.split(".", 1)[0], SPLITS, fractions)


def _top_level_package(function: CodeFunction) -> str:
    return function.top_level


def _query_id(function: CodeFunction) -> str:
    return function.query_id


def collect_stdlib_functions(stdlib_dir: Path | str | None = None) -> list[CodeFunction]:
    """Extract the functions of all standard-library modules and drop ambiguous ones.

    A function is dropped when its query text (compared case-insensitively), its document text or its id occurs
    more than once across the whole standard library (see
    :func:`~embedtune.data.builders.python_code.drop_ambiguous`).

    Args:
        stdlib_dir: The standard library folder; see :func:`iter_stdlib_modules`.

    Returns:
        The unambiguous functions, sorted by query id.
    """
    modules = iter_stdlib_modules(stdlib_dir)
    return drop_ambiguous(function for module, path in modules for function in extract_functions(path, module))


def build_stdlib_retrieval_set(
    stdlib_dir: Path | str | None = None,
    max_queries: Mapping[str, int] | None = None,
    seed: int = 13,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> RetrievalSet:
    """Build the code-retrieval demo set from the standard library.

    Args:
        stdlib_dir: The standard library folder; see :func:`iter_stdlib_modules`.
        max_queries: Split -> most functions sampled for that split; defaults to :data:`DEFAULT_MAX_QUERIES`. A
            split missing from the mapping keeps all its functions.
        seed: Seed of the ``random.Random`` that samples each split from its sorted functions.
        fractions: Share of top-level packages per split; see :func:`assign_split`.

    Returns:
        A :class:`RetrievalSet` whose corpus holds the documents of the sampled functions of all splits, whose
        queries hold their queries, with one relevant document per query (``qrels[split][qid] == {docid: 1}``) and
        ``source=None``.

    Raises:
        ValueError: if a ``max_queries`` value is negative or ``fractions`` is invalid.
    """
    limits = DEFAULT_MAX_QUERIES if max_queries is None else max_queries
    if any(limit < 0 for limit in limits.values()):
        raise ValueError(f"max_queries must be non-negative, got {dict(limits)}")
    by_split = group_by_hash_split(collect_stdlib_functions(stdlib_dir), _top_level_package, SPLITS, fractions)
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        sampled = seeded_sample(by_split[split], limits.get(split), seed, key=_query_id)
        qrels[split] = {function.query_id: {function.doc_id: 1} for function in sampled}
        queries.update((function.query_id, function.query) for function in sampled)
        corpus.update((function.doc_id, function.document) for function in sampled)
    return RetrievalSet(corpus=corpus, queries=queries, qrels=qrels, source=None)
