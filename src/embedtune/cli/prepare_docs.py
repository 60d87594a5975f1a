"""``embedtune prepare docs`` and ``embedtune prepare code``: raw documents or Python code -> a BEIR folder.

Registered by :mod:`embedtune.cli.prepare` into the ``embedtune prepare`` group. The builders live in
:mod:`embedtune.data.builders.docs_beir` and :mod:`embedtune.data.builders.code_beir`; neither imports a model
library (the tokenizer loads only when ``prepare docs`` runs), so building the parser stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedtune.cli.prepare import add_split_arguments
from embedtune.data.builders.chunking import DEFAULT_TOKENIZER
from embedtune.data.builders.code_beir import build_code_beir
from embedtune.data.builders.docs_beir import build_docs_beir
from embedtune.data.builders.pair_methods import DEFAULT_CROP_RATIO, DEFAULT_REMOVE_PROB, ICT, METHODS


def register_docs(subparsers: argparse._SubParsersAction) -> None:
    """Register ``embedtune prepare docs``.

    Args:
        subparsers: The sub-parsers of ``embedtune prepare``.
    """
    docs = subparsers.add_parser(
        "docs",
        help="Turn a folder of raw documents (.txt, .md, .html, .jsonl) into a BEIR folder of pseudo-queries.",
        description='Read the documents under DIR (recursively; .jsonl: one {"text", "title", "_id"} object '
        "per line), cut them into overlapping passages of at most --chunk-tokens tokens (ending at paragraph or "
        "sentence ends where possible), and make one pseudo-query per passage: ict, the Inverse Cloze Task "
        "(arXiv:1906.00300: a sentence of the passage, removed from its positive with --ict-remove-prob); crop, "
        "independent cropping (arXiv:2112.09118: a span of 10-50% of the passage's tokens, the positive being the "
        "whole passage); title, a document's title for its first passage (documents with a .md '# ' heading or a "
        ".jsonl title only). Identical passages and queries are kept once. Documents are split into train/dev/test "
        "(seeded; no document in two splits). The same seed gives the same bytes; OUT appears only once complete.",
    )
    docs.add_argument("dir", metavar="DIR", help="Folder of documents.")
    add_split_arguments(docs, "source documents")
    docs.add_argument("--method", choices=METHODS, default=ICT, help=f"How queries are made (default {ICT}).")
    docs.add_argument("--chunk-tokens", type=int, default=128, help="Most tokens per passage (default 128).")
    docs.add_argument(
        "--overlap-tokens", type=int, default=32, help="Most tokens consecutive passages share (default 32)."
    )
    docs.add_argument(
        "--tokenizer",
        default=DEFAULT_TOKENIZER,
        help="Tokenizer that counts tokens: a model folder or name (its fast Hugging Face tokenizer), or "
        f"'whitespace' (words; fast, no model) (default {DEFAULT_TOKENIZER}).",
    )
    docs.add_argument(
        "--ict-remove-prob",
        type=float,
        default=DEFAULT_REMOVE_PROB,
        help="ict: probability that the query sentence is removed from its positive passage (default "
        f"{DEFAULT_REMOVE_PROB:g}, the paper's: the sentence stays in 10%% of the pairs).",
    )
    shortest, longest = DEFAULT_CROP_RATIO
    docs.add_argument(
        "--crop-min",
        type=float,
        default=shortest,
        help=f"crop: shortest query, share of the passage's tokens ({shortest:g}).",
    )
    docs.add_argument(
        "--crop-max",
        type=float,
        default=longest,
        help=f"crop: longest query, share of the passage's tokens ({longest:g}).",
    )
    docs.set_defaults(handler=run_prepare_docs)


def register_code(subparsers: argparse._SubParsersAction) -> None:
    """Register ``embedtune prepare code``.

    Args:
        subparsers: The sub-parsers of ``embedtune prepare``.
    """
    code = subparsers.add_parser(
        "code",
        help="Turn a tree of Python code into a BEIR code-search folder (docstring summary -> function).",
        description="For every documented public function and public method under DIR, the first sentence of its "
        "docstring becomes a query and its source without the docstring the relevant document. Functions whose "
        "query or body repeats are dropped. Top-level packages are split into train/dev/test (seeded; no package "
        "in two splits; a leading src/ folder is skipped). OUT appears only once complete.",
    )
    code.add_argument("dir", metavar="DIR", help="Folder of Python files.")
    add_split_arguments(code, "top-level packages")
    code.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NAME",
        help="Folder name never read, e.g. tests (repeatable; hidden folders, venv, site-packages and "
        "node_modules are always skipped).",
    )
    code.set_defaults(handler=run_prepare_code)


def run_prepare_docs(args: argparse.Namespace) -> int:
    """Build the BEIR folder from the documents and print the summary.

    Args:
        args: Parsed ``embedtune prepare docs`` arguments: ``dir``, ``out``, ``method``, ``chunk_tokens``,
            ``overlap_tokens``, ``tokenizer``, ``ict_remove_prob``, ``crop_min``, ``crop_max``, ``seed``,
            ``fractions`` and ``overwrite``.

    Returns:
        The exit code, 0.

    Raises:
        DataError: for a bad input file; ValueError for bad settings or a tokenizer that cannot be loaded;
            FileExistsError for a destination that may not be replaced; OSError when the folder cannot be written
            (the CLI prints each as one ``error:`` line).
    """
    summary = build_docs_beir(
        Path(args.dir).expanduser(),
        Path(args.out).expanduser(),
        method=args.method,
        tokenizer=args.tokenizer,
        chunk_tokens=args.chunk_tokens,
        overlap_tokens=args.overlap_tokens,
        seed=args.seed,
        fractions=args.fractions,
        remove_prob=args.ict_remove_prob,
        crop_ratio=(args.crop_min, args.crop_max),
        overwrite=args.overwrite,
    )
    print("\n".join(summary.lines()))
    return 0


def run_prepare_code(args: argparse.Namespace) -> int:
    """Build the BEIR code-search folder and print the summary.

    Args:
        args: Parsed ``embedtune prepare code`` arguments: ``dir``, ``out``, ``seed``, ``fractions``, ``exclude``
            and ``overwrite``.

    Returns:
        The exit code, 0.

    Raises:
        DataError: for a missing folder or one without usable functions; FileExistsError for a destination that
            may not be replaced; OSError when the folder cannot be written.
    """
    summary = build_code_beir(
        Path(args.dir).expanduser(),
        Path(args.out).expanduser(),
        seed=args.seed,
        fractions=args.fractions,
        exclude=args.exclude,
        overwrite=args.overwrite,
    )
    print("\n".join(summary.lines()))
    return 0
