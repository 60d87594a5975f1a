"""Write a built retrieval set as a BEIR folder all at once: into a temporary sibling folder, renamed at the end.

A crash or Ctrl-C never leaves a half-written folder at the destination. An existing non-empty destination is
refused unless ``overwrite`` is given, and even then only when it holds nothing but a BEIR set's files, so that a
mistyped destination (``.``, a home folder) is never deleted.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from embedtune.data.beir import CORPUS_FILE, QRELS_DIR, QRELS_HEADER, QUERIES_FILE, check_split_name
from embedtune.data.types import Qrels
from embedtune.errors import shorten
from embedtune.io import jsonl_line, write_lines_atomic

BEIR_ENTRIES = frozenset({CORPUS_FILE, QUERIES_FILE, QRELS_DIR})
"""The only names ``overwrite`` agrees to replace in an existing destination folder."""


def check_destination(out: str | Path, overwrite: bool = False) -> None:
    """Check that a BEIR set may be written to ``out``; called early, so bad destinations fail before any work.

    Args:
        out: Destination folder.
        overwrite: Whether an existing BEIR folder there may be replaced.

    Raises:
        FileExistsError: if ``out`` is a file, or a non-empty folder while ``overwrite`` is false, or a folder
            holding anything other than ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/`` even with ``overwrite``.
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise FileExistsError(f"{out} exists and is not a folder; refusing to replace it")
    entries = sorted(entry.name for entry in out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    foreign = [name for name in entries if name not in BEIR_ENTRIES]
    if foreign:
        raise FileExistsError(
            f"{out} holds files other than a BEIR set's (e.g. {shorten(foreign[0])}); refusing to delete it even "
            "with --overwrite: remove it yourself or choose another folder"
        )


def _qrels_lines(qrels: Qrels) -> Iterable[str]:
    """Yield the header and rows of a qrels TSV file."""
    yield "\t".join(QRELS_HEADER) + "\n"
    for query_id, judgements in qrels.items():
        for doc_id, score in judgements.items():
            yield f"{query_id}\t{doc_id}\t{int(score)}\n"


def write_beir_folder(
    out: str | Path,
    corpus: Iterable[Mapping[str, Any]],
    queries: Iterable[Mapping[str, Any]],
    qrels: Mapping[str, Qrels],
    *,
    overwrite: bool = False,
) -> Path:
    """Write a BEIR folder atomically: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    The files go into a hidden temporary folder next to ``out`` (``.<name>.<random>.tmp``) that is renamed to
    ``out`` once complete; with ``overwrite`` the old folder is first moved aside and deleted only after the rename.
    On any error the temporary folder is removed and ``out`` is left as it was.

    Args:
        out: Destination folder; its parents are created.
        corpus: Corpus records (``_id``, ``title``, ``text``, optional ``metadata``), written as UTF-8 JSON lines
            with non-ASCII text kept as is.
        queries: Query records (``_id``, ``text``, optional ``metadata``), written the same way.
        qrels: Split name -> query id -> document id -> score.
        overwrite: Replace an existing BEIR folder at ``out``.

    Returns:
        ``out``.

    Raises:
        FileExistsError: see :func:`check_destination`.
        ValueError: if a split name is not a plain name such as ``train``.
        OSError: if the files cannot be written or renamed.
    """
    out = Path(out)
    for split in qrels:
        check_split_name(split)
    check_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    temporary.mkdir()
    moved_aside: Path | None = None
    try:
        (temporary / QRELS_DIR).mkdir()
        write_lines_atomic(temporary / CORPUS_FILE, (jsonl_line(dict(record)) for record in corpus))
        write_lines_atomic(temporary / QUERIES_FILE, (jsonl_line(dict(record)) for record in queries))
        for split, split_qrels in qrels.items():
            write_lines_atomic(temporary / QRELS_DIR / f"{split}.tsv", _qrels_lines(split_qrels))
        check_destination(out, overwrite)  # again: another process may have written there meanwhile
        if out.is_dir() and any(out.iterdir()):
            moved_aside = out.parent / f".{out.name}.{secrets.token_hex(6)}.old"
            out.rename(moved_aside)
        temporary.replace(out)  # an empty folder at ``out`` is replaced
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        if moved_aside is not None and not out.exists():
            moved_aside.rename(out)
        raise
    if moved_aside is not None:
        shutil.rmtree(moved_aside, ignore_errors=True)
    return out
