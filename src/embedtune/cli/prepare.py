"""``embedtune prepare``: turn what users hold into BEIR retrieval folders; ``prepare squad`` converts SQuAD-format QA.

``prepare docs`` and ``prepare code`` live in :mod:`embedtune.cli.prepare_docs` and are registered here when that
module exists; ``prepare pairs`` (mined file → labelled pairs with phases) lives in :mod:`embedtune.cli.prepare_pairs`.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType

from embedtune.cli.prepare_pairs import register_pairs
from embedtune.data.builders.squad import (
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    DOCUMENT_MODES,
    PARAGRAPH,
    build_squad_beir,
    check_split_fractions,
)

_PREPARE_DOCS = "embedtune.cli.prepare_docs"


def _optional_module(name: str) -> ModuleType | None:
    """Import a module that may not exist yet; an import error inside an existing module is not hidden."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        return None


def add_prepare_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune prepare`` and its sub-commands (``squad``, ``pairs``; ``docs``, ``code`` when available).

    Args:
        commands: The sub-parsers of the ``embedtune`` parser.
    """
    prepare = commands.add_parser(
        "prepare",
        help="Turn QA files, documents or code into a BEIR retrieval folder.",
        description="Build a BEIR folder (corpus.jsonl, queries.jsonl, qrels/train|dev|test.tsv) that "
        "'embedtune train --data' and 'embedtune eval' read.",
    )
    subparsers = prepare.add_subparsers(dest="prepare_command", required=True)
    add_squad_command(subparsers)
    register_pairs(subparsers)
    prepare_docs = _optional_module(_PREPARE_DOCS)
    if prepare_docs is not None:
        prepare_docs.register_docs(subparsers)
        prepare_docs.register_code(subparsers)


def parse_fractions(text: str) -> tuple[float, float, float]:
    """Parse ``--fractions``: three comma-separated shares for train, dev and test, e.g. ``0.8,0.1,0.1``.

    Args:
        text: The option's value.

    Returns:
        The three shares.

    Raises:
        argparse.ArgumentTypeError: unless they are three finite non-negative numbers summing to 1.
    """
    try:
        return check_split_fractions([float(part) for part in text.split(",")])
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected train,dev,test shares such as 0.8,0.1,0.1: {error}") from None


def add_squad_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``embedtune prepare squad``.

    Args:
        subparsers: The sub-parsers of ``embedtune prepare``.
    """
    squad = subparsers.add_parser(
        "squad",
        help="Convert a SQuAD-format QA file (SQuAD v1.1/v2, KorQuAD 1.0, XQuAD) into a BEIR folder.",
        description="Questions become queries (answers kept in their metadata), paragraphs become documents "
        "(title: the article title; HTML turned into text; identical paragraphs merged). Unanswerable questions "
        "are dropped. Articles are split into train/dev/test (seeded; no article in two splits). OUT appears only "
        "once complete.",
    )
    squad.add_argument("file", metavar="FILE", help="SQuAD-format JSON file.")
    add_split_arguments(squad, "articles")
    squad.add_argument(
        "--document",
        choices=DOCUMENT_MODES,
        default=PARAGRAPH,
        help="paragraph: a document is a paragraph; answer-sentence: every sentence is a document and the positive "
        f"is the sentence holding the answer (default {PARAGRAPH}).",
    )
    squad.set_defaults(handler=run_prepare_squad)


def add_split_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """Add the arguments every ``prepare`` command shares: OUT, ``--seed``, ``--fractions`` and ``--overwrite``.

    Args:
        parser: The sub-command's parser (its input argument is added before this call).
        unit: What the splits divide, in words (``"articles"``, ``"source documents"``), for the help text.
    """
    parser.add_argument("out", metavar="OUT", help="BEIR folder to create (refused if it exists and is not empty).")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"Seed of the split (default {DEFAULT_SEED}).")
    shares = ",".join(f"{share:g}" for share in DEFAULT_FRACTIONS)
    parser.add_argument(
        "--fractions",
        type=parse_fractions,
        default=DEFAULT_FRACTIONS,
        help=f"Shares of {unit} for train,dev,test, summing to 1; a 0 share writes no qrels file for that split "
        f"(default {shares}).",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace OUT if it is an existing BEIR folder (and nothing else)."
    )


def run_prepare_squad(args: argparse.Namespace) -> int:
    """Convert the SQuAD-format file into the BEIR folder and print the summary.

    Args:
        args: Parsed ``embedtune prepare squad`` arguments: ``file``, ``out``, ``seed``, ``fractions``, ``document``
            and ``overwrite``.

    Returns:
        The exit code, 0.

    Raises:
        DataError: for a bad input file; FileExistsError for a destination that may not be replaced; OSError when
            the folder cannot be written (the CLI prints each as one ``error:`` line).
    """
    summary = build_squad_beir(
        Path(args.file).expanduser(),
        Path(args.out).expanduser(),
        document=args.document,
        seed=args.seed,
        fractions=args.fractions,
        overwrite=args.overwrite,
    )
    print("\n".join(summary.lines()))
    return 0
