"""The built-in demo data set: code retrieval over the Python standard library of the running interpreter.

The task: given a one-sentence description of what a function does, find that function's source code. Each public
function or public method of a public class in the standard library (``sysconfig.get_paths()["stdlib"]``) with a
docstring yields one pair:

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

import ast
import os
import re
import sysconfig
import textwrap
import tokenize
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from embedtune.data.splits import group_by_hash_split, hash_split, seeded_sample
from embedtune.data.types import RetrievalSet

SPLITS = ("train", "dev", "test")
"""Split names, in the order of the ``fractions`` given to :func:`assign_split`."""

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
"""Default share of top-level packages per split (train, dev, test)."""

DEFAULT_MAX_QUERIES: Mapping[str, int] = {"train": 1200, "dev": 150, "test": 300}
"""Default cap on sampled functions per split; small enough to fine-tune a MiniLM on a laptop CPU in minutes."""

MIN_QUERY_WORDS = 4
MAX_QUERY_WORDS = 40
MIN_DOCUMENT_CODE_LINES = 3
"""A document needs at least this many non-blank, non-comment lines (``def`` line included)."""

EXCLUDED_DIRS = frozenset(
    "site-packages dist-packages test tests idle_test idlelib lib2to3 tkinter turtledemo ensurepip __pycache__".split()
)
"""Folder names under the standard library whose modules are never used."""

_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.")
_SENTENCE_END = re.compile(r"\.\s")
_SIGNATURE_START = re.compile(r"^[A-Za-z_][\w.]*\s*\(")
_QUOTES = "`'\"*"


@dataclass
class CodeFunction:
    """One function of the standard library turned into a (query, document) pair.

    Attributes:
        module: Dotted module name, e.g. ``"json.decoder"``.
        qualname: Name inside the module, e.g. ``"dumps"`` or ``"JSONDecoder.decode"``.
        query: First sentence of the docstring.
        document: Source of the function without its docstring.
    """

    module: str
    qualname: str
    query: str
    document: str

    @property
    def query_id(self) -> str:
        """Query id in the retrieval set: ``q:<module>.<qualname>``."""
        return f"q:{self.module}.{self.qualname}"

    @property
    def doc_id(self) -> str:
        """Document id in the retrieval set: ``d:<module>.<qualname>``."""
        return f"d:{self.module}.{self.qualname}"


def first_sentence(docstring: str) -> str:
    """Return the first sentence of a docstring.

    The first paragraph (text up to the first blank line) is taken, its whitespace collapsed, and it is cut after
    the first full stop followed by a space (common abbreviations such as ``e.g.`` do not end a sentence).

    Args:
        docstring: A cleaned docstring (as returned by :func:`ast.get_docstring`).

    Returns:
        The first sentence, or ``""`` for an empty docstring.
    """
    paragraph = re.split(r"\n\s*\n", docstring.strip(), maxsplit=1)[0]
    text = " ".join(paragraph.split())
    for match in _SENTENCE_END.finditer(text):
        candidate = text[: match.start() + 1]
        if not candidate.lower().endswith(_ABBREVIATIONS):
            return candidate
    return text


def is_usable_query(query: str) -> bool:
    """Tell whether a first sentence is a clean natural-language query.

    Args:
        query: Output of :func:`first_sentence`.

    Returns:
        ``False`` for queries with fewer than :data:`MIN_QUERY_WORDS` or more than :data:`MAX_QUERY_WORDS` words,
        doctest-like content (``>>>``), signature-like or symbol openings (``name(args) -> result``,
        ``(typ, data) = ...``, ``+ ...``), sentences that only introduce an example or list (ending with ``:``) and
        deprecation notes (``Deprecated, use ... instead.``).
    """
    word_count = len(query.split())
    if not MIN_QUERY_WORDS <= word_count <= MAX_QUERY_WORDS:
        return False
    if ">>>" in query or query.endswith(":") or query.lower().startswith("deprecated"):
        return False
    return not _SIGNATURE_START.match(query) and (query[0].isalnum() or query[0] in _QUOTES)


def extract_functions(path: Path, module: str) -> list[CodeFunction]:
    """Extract (query, document) pairs from one Python source file.

    Public top-level functions and public methods of public top-level classes (names not starting with ``_``)
    with a usable docstring are kept; see :func:`is_usable_query` and :func:`strip_docstring` for what is dropped.

    Args:
        path: The ``.py`` file.
        module: Its dotted module name, used for :attr:`CodeFunction.module`.

    Returns:
        The functions in source order; an empty list when the file cannot be read, decoded or parsed.
    """
    source = _read_source(path)
    if source is None:
        return []
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        return []
    lines = [line + "\n" for line in source.split("\n")]  # tokenize.open already translated newlines to "\n"
    functions = []
    for qualname, node in _public_functions(tree):
        function = _to_code_function(node, lines, module, qualname)
        if function is not None:
            functions.append(function)
    return functions


def strip_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: Sequence[str]) -> str | None:
    """Return a function's source with its docstring lines removed, or ``None`` when that is unsafe or pointless.

    The source runs from the first decorator to the end of the body and is dedented (methods lose their class
    indentation); everything except the docstring's own lines is kept verbatim.

    Args:
        node: A function definition whose body starts with a docstring.
        lines: The file's lines, with line endings.

    Returns:
        The document text, or ``None`` when the docstring shares a line with other code, the remaining body is
        trivial (only ``pass``, ``...`` or ``raise NotImplementedError``) or the document has fewer than
        :data:`MIN_DOCUMENT_CODE_LINES` code lines.
    """
    docstring, rest = node.body[0], node.body[1:]
    if not rest or _is_trivial_body(rest) or not _docstring_owns_its_lines(docstring, rest, lines):
        return None
    start = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
    kept = lines[start - 1 : docstring.lineno - 1] + lines[docstring.end_lineno : node.end_lineno]
    document = textwrap.dedent("".join(kept)).rstrip()
    if _count_code_lines(document) < MIN_DOCUMENT_CODE_LINES:
        return None
    return document


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
    modules = []
    for path in sorted(_python_files(root)):
        module = _module_name(path.relative_to(root))
        if module is not None:
            modules.append((module, path))
    return modules


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
    return function.module.split(".", 1)[0]


def _query_id(function: CodeFunction) -> str:
    return function.query_id


def collect_stdlib_functions(stdlib_dir: Path | str | None = None) -> list[CodeFunction]:
    """Extract the functions of all standard-library modules and drop ambiguous ones.

    A function is dropped when its query text (compared case-insensitively), its document text or its id occurs
    more than once across the whole standard library.

    Args:
        stdlib_dir: The standard library folder; see :func:`iter_stdlib_modules`.

    Returns:
        The unambiguous functions, sorted by query id.
    """
    functions = [
        function for module, path in iter_stdlib_modules(stdlib_dir) for function in extract_functions(path, module)
    ]
    query_counts = Counter(function.query.casefold() for function in functions)
    document_counts = Counter(function.document for function in functions)
    id_counts = Counter(function.query_id for function in functions)
    unique = [
        function
        for function in functions
        if query_counts[function.query.casefold()] == 1
        and document_counts[function.document] == 1
        and id_counts[function.query_id] == 1
    ]
    return sorted(unique, key=_query_id)


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


def _read_source(path: Path) -> str | None:
    try:
        with tokenize.open(path) as handle:
            return handle.read()
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
        return None


def _public_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_public(node.name):
            found.append((node.name, node))
        elif isinstance(node, ast.ClassDef) and _is_public(node.name):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_public(member.name):
                    found.append((f"{node.name}.{member.name}", member))
    return found


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def _to_code_function(
    node: ast.FunctionDef | ast.AsyncFunctionDef, lines: Sequence[str], module: str, qualname: str
) -> CodeFunction | None:
    docstring = ast.get_docstring(node, clean=True)
    if not docstring:
        return None
    query = first_sentence(docstring)
    if not is_usable_query(query):
        return None
    document = strip_docstring(node, lines)
    if document is None:
        return None
    return CodeFunction(module=module, qualname=qualname, query=query, document=document)


def _is_trivial_body(statements: Sequence[ast.stmt]) -> bool:
    return all(_is_placeholder(statement) for statement in statements)


def _is_placeholder(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return True
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        exc = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _docstring_owns_its_lines(docstring: ast.stmt, rest: Sequence[ast.stmt], lines: Sequence[str]) -> bool:
    first_line = lines[docstring.lineno - 1].encode("utf-8")
    if first_line[: docstring.col_offset].strip():
        return False
    last_line = lines[docstring.end_lineno - 1].encode("utf-8")
    trailing = last_line[docstring.end_col_offset :].strip()
    if trailing and not trailing.startswith(b"#"):
        return False
    return rest[0].lineno > docstring.end_lineno


def _count_code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _python_files(root: Path) -> list[Path]:
    files = []
    for folder, subfolders, filenames in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in EXCLUDED_DIRS]  # prune, e.g. site-packages
        files.extend(Path(folder, name) for name in filenames if name.endswith(".py"))
    return files


def _module_name(relative: Path) -> str | None:
    parts = list(relative.with_suffix("").parts)
    if any(part in EXCLUDED_DIRS for part in parts[:-1]) or parts[-1] == "__main__":
        return None
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or any(not part.isidentifier() or part.startswith("_") for part in parts):
        return None
    return ".".join(parts)
