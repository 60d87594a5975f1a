"""Turn any tree of Python source files into (docstring summary, function source) code-search pairs.

Each public function or public method of a public class with a docstring yields one :class:`CodeFunction`:

* query: the first sentence of the docstring, e.g. ``"Return the canonical path of the specified filename."``;
* document: the function's source (decorators and ``def`` line included) with the docstring removed, so the answer
  cannot be found by copying the query text out of the document.

Clean-up: queries shorter than :data:`MIN_QUERY_WORDS` or longer than :data:`MAX_QUERY_WORDS` words, doctest-like or
signature-like first lines, trivial bodies (``pass``, one-line bodies) and, through :func:`drop_ambiguous`, every
function whose query, document or id occurs more than once in the tree are dropped, so each query has exactly one
correct document and no document answers two queries.

The stdlib demo set (:mod:`embedtune.data.builders.stdlib_code`) and ``embedtune prepare code``
(:mod:`embedtune.data.builders.code_beir`) are both built from these functions.
"""

from __future__ import annotations

import ast
import os
import re
import textwrap
import tokenize
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_QUERY_WORDS = 4
MAX_QUERY_WORDS = 40
MIN_DOCUMENT_CODE_LINES = 3
"""A document needs at least this many non-blank, non-comment lines (``def`` line included)."""

DEFAULT_EXCLUDED_DIRS = frozenset("site-packages dist-packages node_modules venv __pycache__".split())
"""Folder names never searched for modules in a user's tree (hidden folders such as ``.venv`` are skipped too)."""

_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.")
_SENTENCE_END = re.compile(r"\.\s")
_SIGNATURE_START = re.compile(r"^[A-Za-z_][\w.]*\s*\(")
_QUOTES = "`'\"*"
_PLAIN_NAME = re.compile(r"[\w-]+")

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class CodeFunction:
    """One function of a Python tree turned into a (query, document) pair.

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

    @property
    def top_level(self) -> str:
        """Top-level package or module of :attr:`module` (the part before the first dot)."""
        return self.module.split(".", 1)[0]


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


def parse_source(path: Path) -> tuple[ast.Module, list[str]] | None:
    """Read and parse one Python source file (its encoding declaration honoured).

    Args:
        path: The ``.py`` file.

    Returns:
        ``(syntax tree, lines with their line endings)``, or ``None`` when the file cannot be read, decoded or
        parsed.
    """
    try:
        with tokenize.open(path) as handle:
            source = handle.read()
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
        return None
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        return None
    return tree, [line + "\n" for line in source.split("\n")]  # tokenize.open already translated newlines to "\n"


def functions_of(tree: ast.Module, lines: Sequence[str], module: str) -> list[CodeFunction]:
    """Turn the public functions of a parsed module into (query, document) pairs.

    Public top-level functions and public methods of public top-level classes (names not starting with ``_``)
    with a usable docstring are kept; see :func:`is_usable_query` and :func:`strip_docstring` for what is dropped.

    Args:
        tree: The module's syntax tree.
        lines: Its lines, with line endings (see :func:`parse_source`).
        module: Its dotted module name, used for :attr:`CodeFunction.module`.

    Returns:
        The functions in source order.
    """
    functions = []
    for qualname, node in _public_functions(tree):
        function = _to_code_function(node, lines, module, qualname)
        if function is not None:
            functions.append(function)
    return functions


def extract_functions(path: Path, module: str) -> list[CodeFunction]:
    """Extract (query, document) pairs from one Python source file (see :func:`functions_of`).

    Args:
        path: The ``.py`` file.
        module: Its dotted module name, used for :attr:`CodeFunction.module`.

    Returns:
        The functions in source order; an empty list when the file cannot be read, decoded or parsed.
    """
    parsed = parse_source(path)
    return [] if parsed is None else functions_of(parsed[0], parsed[1], module)


def strip_docstring(node: FunctionNode, lines: Sequence[str]) -> str | None:
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


def iter_python_modules(
    root: Path | str, excluded_dirs: Collection[str] = DEFAULT_EXCLUDED_DIRS, *, public_only: bool = False
) -> list[tuple[str, Path]]:
    """List the Python modules of a tree with their dotted names.

    Args:
        root: The folder whose ``.py`` files are listed, recursively; module names are relative to it.
        excluded_dirs: Folder names never entered (hidden folders, whose names start with ``.``, never are either).
        public_only: Also skip ``__main__.py`` files and modules with a private (``_foo``) or non-identifier
            component (the standard library's rule); otherwise components need only be letters, digits, ``_`` or
            ``-``.

    Returns:
        ``(dotted module name, path)`` pairs sorted by path; ``json/decoder.py`` becomes ``json.decoder`` and
        ``email/__init__.py`` becomes ``email``; a ``__init__.py`` directly in ``root`` is named after ``root``.
    """
    root = Path(root)
    modules = []
    for path in sorted(_python_files(root, excluded_dirs)):
        module = _module_name(path.relative_to(root), excluded_dirs, public_only)
        if module is None and not public_only and path.parent == root and path.name == "__init__.py":
            module = root.resolve().name or None
        if module is not None:
            modules.append((module, path))
    return modules


def drop_ambiguous(functions: Iterable[CodeFunction]) -> list[CodeFunction]:
    """Drop every function whose query (compared case-insensitively), document or id occurs more than once.

    Overrides sharing one docstring and copy-pasted helpers would otherwise give a query two correct documents.

    Args:
        functions: Functions of a whole tree.

    Returns:
        The unambiguous functions, sorted by query id.
    """
    functions = list(functions)
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
    return sorted(unique, key=lambda function: function.query_id)


def _public_functions(tree: ast.Module) -> list[tuple[str, FunctionNode]]:
    """Return ``(qualname, node)`` for public top-level functions and public methods of public top-level classes."""
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


def _to_code_function(node: FunctionNode, lines: Sequence[str], module: str, qualname: str) -> CodeFunction | None:
    """Return the function's pair, or ``None`` without a usable docstring or document."""
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
    """Whether the docstring's lines hold nothing else but comments, so removing them removes only the docstring."""
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


def _python_files(root: Path, excluded_dirs: Collection[str]) -> list[Path]:
    files = []
    for folder, subfolders, filenames in os.walk(root):
        # prune in place, e.g. site-packages or .git
        subfolders[:] = [name for name in subfolders if name not in excluded_dirs and not name.startswith(".")]
        files.extend(Path(folder, name) for name in filenames if name.endswith(".py"))
    return files


def _module_name(relative: Path, excluded_dirs: Collection[str], public_only: bool) -> str | None:
    """Return the dotted module name of a file relative to the tree's root, or ``None`` when it is skipped."""
    parts = list(relative.with_suffix("").parts)
    if any(part in excluded_dirs for part in parts[:-1]) or (public_only and parts[-1] == "__main__"):
        return None
    if parts[-1] == "__init__":
        parts.pop()
    if not parts:
        return None
    if public_only and any(not part.isidentifier() or part.startswith("_") for part in parts):
        return None
    if not public_only and any(not _PLAIN_NAME.fullmatch(part) for part in parts):
        return None
    return ".".join(parts)
