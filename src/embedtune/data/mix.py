"""``data.mix``: more training data beside the run's own, each source kept apart so batches never mix them.

A source is a BEIR folder (one example per query of its ``qrels/train.tsv``) or a training JSONL file. It only adds
training examples: dev and test come from the run's own data, and a mixed-in example whose query text is a dev or test
query's, or (with a split carved by document) whose positive is relevant to one, is dropped and counted, the
same rules the run's own training data follows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from embedtune.data.beir import QRELS_DIR, examples_from_qrels, load_beir
from embedtune.data.document_groups import without_relevant_positives
from embedtune.data.splits import normalize_query
from embedtune.data.training_file import load_triplets
from embedtune.data.types import TrainingExample
from embedtune.errors import DataError

logger = logging.getLogger(__name__)

TRAIN_QRELS = "train"
MAIN_DATASET = "main"
"""The trainer's name for the run's own training data beside the mixed-in sources."""
RESERVED_NAMES = (MAIN_DATASET, "anchor", "positive", "label")
"""Names a source may not take: the run's own data, and column names (the trainer reads prompts by either)."""


@dataclass(frozen=True)
class MixSource:
    """One mixed-in training source.

    Attributes:
        name: A unique short name (the folder's or file's name; ``_2``, ``_3``… added on a clash), used as the
            dataset name in the trainer and in the log.
        path: The folder or file.
        examples: Its training examples, after the held-out queries and documents were dropped.
        files: Files read, for hashing into the run record.
    """

    name: str
    path: Path
    examples: list[TrainingExample]
    files: tuple[Path, ...]


def load_mix(paths: list[str], held_out_texts: set[str], held_out_docs: set[str]) -> list[MixSource]:
    """Load every ``data.mix`` source and drop what would leak the run's dev or test split into training.

    Args:
        paths: BEIR folders or training JSONL files, in order.
        held_out_texts: Normalised texts of every dev and test query.
        held_out_docs: Normalised texts of the relevant documents of the splits carved by document
            (``data.test_split_by`` / ``data.dev_split_by``), else empty.

    Returns:
        One source per path, in order.

    Raises:
        DataError: naming the file (and line and field) of a malformed source, a folder without
            ``qrels/train.tsv``, or a source left without examples.
    """
    sources, names = [], set(RESERVED_NAMES)
    for text in paths:
        path = Path(text).expanduser()
        examples, files = _read(path)
        kept = [example for example in examples if normalize_query(example.query) not in held_out_texts]
        kept, linked = without_relevant_positives(kept, held_out_docs)
        dropped = len(examples) - len(kept)
        if dropped:
            logger.warning("data.mix %s: dropped %d examples whose query or positive is held out", path, dropped)
        if not kept:
            raise DataError(path, None, "data.mix", "no training example left once dev and test queries are out")
        name = _unique(path.stem if path.is_file() else path.name, names)
        names.add(name)
        sources.append(MixSource(name, path, kept, files))
    return sources


def _read(path: Path) -> tuple[list[TrainingExample], tuple[Path, ...]]:
    if path.is_dir():
        qrels = path / QRELS_DIR / f"{TRAIN_QRELS}.tsv"
        if not qrels.is_file():
            raise DataError(path, None, "data.mix", f"a BEIR folder mixed in needs {QRELS_DIR}/{TRAIN_QRELS}.tsv")
        examples = examples_from_qrels(load_beir(path, [TRAIN_QRELS]), TRAIN_QRELS)
        return examples, (path / "corpus.jsonl", path / "queries.jsonl", qrels)
    return load_triplets(path), (path,)


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    number = 2
    while f"{name}_{number}" in taken:
        number += 1
    return f"{name}_{number}"
