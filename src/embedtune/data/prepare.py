"""Turn validated data into what training and evaluation consume: training rows and retrieval sets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from embedtune.config import DataConfig
from embedtune.data.beir import dataset_files, load_beir
from embedtune.data.splits import DEV_SPLIT, TRAIN_SPLIT, split_dev_queries, with_dev_split
from embedtune.data.training_file import load_triplets
from embedtune.data.types import RetrievalSet, TrainingExample

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Validated data for one run.

    Attributes:
        train_examples: Training records (one query, its positives and weighted hard negatives each).
        retrieval_set: Corpus, queries and qrels with a ``dev`` split (carved from train when absent).
        eval_split: Split of ``retrieval_set`` reported at the end (``test`` normally; ``dev`` when there is none).
        files: Input files, for hashing into the run folder.
    """

    train_examples: list[TrainingExample]
    retrieval_set: RetrievalSet
    eval_split: str
    files: list[Path] = field(default_factory=list)


def prepare_data(config: DataConfig) -> PreparedData:
    """Load and validate all data of a run before any model is loaded.

    A BEIR folder (``config.path``) gives the corpus, queries and qrels; training pairs come from its train qrels, or
    from ``config.train_file`` (JSONL) when given, in which case any example whose query text is also a dev or test
    query is dropped so nothing is shared across splits. Without a BEIR folder, the dev split is carved out of the
    JSONL examples and their passages form the corpus.

    Args:
        config: The data settings.

    Returns:
        The prepared data.

    Raises:
        embedtune.data.errors.DataError: for any malformed input (names file, line and field).
        ValueError: if the reported split does not exist or no training example is left.
    """
    files: list[Path] = []
    if config.path is not None:
        retrieval_set = with_dev_split(load_beir(config.path), config.dev_fraction, config.split_seed)
        files += dataset_files(config.path)
        if config.train_file is not None:
            examples = drop_held_out_queries(load_triplets(config.train_file), retrieval_set)
            files.append(Path(config.train_file))
        else:
            examples = examples_from_qrels(retrieval_set, TRAIN_SPLIT)
    else:
        examples = load_triplets(config.train_file)
        files.append(Path(config.train_file))
        examples, retrieval_set = carve_dev_from_examples(examples, config.dev_fraction, config.split_seed)
    eval_split = config.eval_split
    if eval_split not in retrieval_set.qrels:
        if eval_split != "test":
            raise ValueError(f"data.eval_split '{eval_split}' not found; splits are {sorted(retrieval_set.qrels)}")
        logger.warning("No '%s' split: the final base vs fine-tuned comparison is reported on dev.", eval_split)
        eval_split = DEV_SPLIT
    if not examples:
        raise ValueError("no training examples left after removing dev and test queries")
    return PreparedData(examples, retrieval_set, eval_split, files)


def examples_from_qrels(retrieval_set: RetrievalSet, split: str) -> list[TrainingExample]:
    """One example per judged query of ``split``: its relevant documents (relevance > 0) as positives."""
    examples = []
    for query_id, judgements in retrieval_set.qrels[split].items():
        positives = tuple(retrieval_set.corpus[doc_id] for doc_id, relevance in judgements.items() if relevance > 0)
        if positives:
            examples.append(TrainingExample(query=retrieval_set.queries[query_id], pos=positives))
    return examples


def drop_held_out_queries(examples: list[TrainingExample], retrieval_set: RetrievalSet) -> list[TrainingExample]:
    """Remove training examples whose query text is a query of any split other than train (no leakage)."""
    held_out = {
        retrieval_set.queries[query_id]
        for split, qrels in retrieval_set.qrels.items()
        if split != TRAIN_SPLIT
        for query_id in qrels
    }
    kept = [example for example in examples if example.query not in held_out]
    if len(kept) < len(examples):
        logger.warning("Dropped %d training examples whose query is a dev/test query.", len(examples) - len(kept))
    return kept


def carve_dev_from_examples(
    examples: list[TrainingExample], dev_fraction: float, seed: int
) -> tuple[list[TrainingExample], RetrievalSet]:
    """Split JSONL examples by query into train and dev; the dev retrieval corpus is every passage in the file.

    Returns:
        ``(train_examples, retrieval_set)`` where ``retrieval_set`` has a ``dev`` split only.
    """
    query_texts = sorted({example.query for example in examples})
    _, dev_queries = split_dev_queries(query_texts, dev_fraction, seed)
    dev_set = set(dev_queries)
    passages = sorted({text for example in examples for text in (*example.pos, *example.neg)})
    doc_ids = {text: f"doc-{index}" for index, text in enumerate(passages)}
    query_ids = {text: f"query-{index}" for index, text in enumerate(query_texts)}
    dev_qrels: dict[str, dict[str, int]] = {}
    for example in examples:
        if example.query in dev_set:
            dev_qrels.setdefault(query_ids[example.query], {}).update({doc_ids[p]: 1 for p in example.pos})
    retrieval_set = RetrievalSet(
        corpus={doc_id: text for text, doc_id in doc_ids.items()},
        queries={query_id: text for text, query_id in query_ids.items()},
        qrels={DEV_SPLIT: dev_qrels},
    )
    return [example for example in examples if example.query not in dev_set], retrieval_set
