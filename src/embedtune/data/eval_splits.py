"""Build evaluation splits: take them as a BEIR folder ships them, or carve them out of a pool of judged queries.

A pool is either a BEIR folder's train qrels or the queries of a FlagEmbedding training file. Carving works on
groups of queries with equal normalised text (:func:`~embedtune.data.splits.normalize_query`), so two spellings of
one question never land in two splits; carving by document (:mod:`embedtune.data.document_groups`) works on larger
groups, linked by shared relevant documents too.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from embedtune.data.beir import QRELS_DIR, load_beir
from embedtune.data.document_groups import carve_groups, document_groups
from embedtune.data.splits import carve_queries, group_by_normalized_text, normalize_query
from embedtune.data.types import EvalSplit, Qrels, RetrievalSet, TrainingExample
from embedtune.errors import DataError, reading

BY_QUERY, BY_DOCUMENT = "query", "document"
"""The ways of carving (``data.test_split_by``): queries one by one, or groups sharing relevant documents."""

logger = logging.getLogger(__name__)


@dataclass
class QueryPool:
    """Judged queries evaluation splits can be carved from.

    Attributes:
        corpus: Document id -> text; every split carved from the pool ranks this corpus.
        queries: Query id -> text, for the queries still in the pool.
        qrels: Judgements of those queries; each query has at least one relevant document (score > 0).
        path: File the queries come from, named in messages and in the ``source`` of carved splits.
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels
    path: Path

    def without(self, query_ids: Collection[str]) -> QueryPool:
        """Return a copy of the pool without ``query_ids`` (corpus shared, not copied)."""
        kept = [query_id for query_id in self.qrels if query_id not in query_ids]
        return QueryPool(
            corpus=self.corpus,
            queries={query_id: self.queries[query_id] for query_id in kept},
            qrels={query_id: self.qrels[query_id] for query_id in kept},
            path=self.path,
        )


def pool_from_qrels(retrieval_set: RetrievalSet, split: str, path: Path) -> QueryPool:
    """Pool the queries of one qrels split that have a relevant document (the others can neither train nor rank).

    Args:
        retrieval_set: A loaded BEIR folder.
        split: The split to pool, normally ``"train"``.
        path: The split's qrels file.

    Returns:
        A pool over the folder's whole corpus.

    Raises:
        KeyError: if ``retrieval_set`` has no such split (callers pass loaded splits only).
    """
    qrels = {
        query_id: dict(judgements)
        for query_id, judgements in retrieval_set.qrels[split].items()
        if any(score > 0 for score in judgements.values())
    }
    queries = {query_id: retrieval_set.queries[query_id] for query_id in qrels}
    return QueryPool(corpus=retrieval_set.corpus, queries=queries, qrels=qrels, path=path)


def pool_from_examples(examples: Sequence[TrainingExample], path: Path) -> QueryPool:
    """Pool the queries of a training file: one query per normalised query text, its positives judged relevant.

    Examples sharing a normalised query text become one query (``query-<n>``, text of the first such example) whose
    relevant documents are all their positives. The corpus is every passage of the file, positives and negatives
    (``doc-<n>``, numbered in sorted text order), so ranking a carved query is as hard as the file allows.

    Args:
        examples: The file's training examples.
        path: The training file.

    Returns:
        The pool.
    """
    passages = sorted({passage for example in examples for passage in (*example.pos, *example.neg)})
    doc_ids = {text: f"doc-{index}" for index, text in enumerate(passages)}
    first_text: dict[str, str] = {}
    positives: dict[str, dict[str, int]] = {}
    for example in examples:
        key = normalize_query(example.query)
        first_text.setdefault(key, example.query)
        positives.setdefault(key, {}).update((doc_ids[passage], 1) for passage in example.pos)
    query_ids = {key: f"query-{index}" for index, key in enumerate(sorted(first_text))}
    return QueryPool(
        corpus={doc_id: text for text, doc_id in doc_ids.items()},
        queries={query_ids[key]: first_text[key] for key in query_ids},
        qrels={query_ids[key]: positives[key] for key in query_ids},
        path=path,
    )


def carve_split(
    pool: QueryPool,
    name: str,
    fraction: float,
    seed: int,
    setting: str,
    exclude_texts: Collection[str] = (),
    by: str = BY_QUERY,
) -> tuple[QueryPool, EvalSplit]:
    """Carve an evaluation split out of a pool, by groups of equal normalised query text, or by document.

    Args:
        pool: Where the split's queries come from.
        name: The split's name (``"test"`` or ``"dev"``).
        fraction: Share of the candidate queries to carve out (see :func:`~embedtune.data.splits.carve_queries`).
        seed: Seed of the carving.
        setting: The ``data.`` setting ``fraction`` comes from, named in messages (``"dev_fraction"``...).
        exclude_texts: Normalised texts of queries already held out elsewhere; such queries are never carved (they
            stay in the pool, for the caller to drop from training).
        by: ``"query"``, or ``"document"``: whole groups of queries linked by shared relevant documents
            (:func:`~embedtune.data.document_groups.document_groups`), so that no carved query shares a relevant
            document with a query left in the pool.

    Returns:
        ``(rest, split)``: the pool without the carved queries, and the split, ranking the pool's corpus.

    Raises:
        DataError: naming the pool's file: when the pool holds no query with a judgement > 0; naming the setting
            too, when fewer than 2 candidate queries are left to carve, or (by document) when they form a single
            group linked by shared relevant documents.
    """
    if not pool.queries:
        raise DataError(pool.path, None, None, f"no judgement with score > 0: no query to carve a '{name}' split from")
    candidates = {qid: text for qid, text in pool.queries.items() if normalize_query(text) not in exclude_texts}
    groups = group_by_normalized_text(candidates)
    if len(groups) < 2:
        message = (
            f"{len(groups)} distinct judged {'query' if len(groups) == 1 else 'queries'} left, too few to carve a "
            f"'{name}' split out (data.{setting}={fraction}): need at least 2"
        )
        raise DataError(pool.path, None, None, message)
    if by == BY_DOCUMENT:
        carved_ids, how = _carve_by_document(pool, candidates, name, fraction, seed, len(groups))
    else:
        _, carved_keys = carve_queries(groups, fraction, seed, setting=setting)
        carved_ids, how = sorted(query_id for key in carved_keys for query_id in groups[key]), ""
    split = EvalSplit(
        name=name,
        corpus=pool.corpus,
        queries={query_id: pool.queries[query_id] for query_id in carved_ids},
        qrels={query_id: dict(pool.qrels[query_id]) for query_id in carved_ids},
        source=f"carved from {pool.path} ({fraction * 100:g} % of {len(groups)} distinct queries{how}, seed {seed})",
    )
    return pool.without(set(carved_ids)), split


def _carve_by_document(
    pool: QueryPool, candidates: dict[str, str], name: str, fraction: float, seed: int, distinct: int
) -> tuple[list[str], str]:
    """Return the carved query ids (whole document groups) and the words the split's source adds."""
    groups = document_groups(candidates, pool.qrels, pool.corpus)
    if len(groups) < 2:
        message = (
            f"carving '{name}' by document: all {distinct} distinct judged queries are linked by shared relevant "
            f"documents into one group, so no '{name}' split can be carved that shares none with training; set "
            f"data.{name}_split_by=query"
        )
        raise DataError(pool.path, None, None, message)
    sizes = [len({normalize_query(candidates[query_id]) for query_id in group}) for group in groups]
    _, carved = carve_groups(groups, sizes, fraction, seed)
    carved_ids = sorted(query_id for index in carved for query_id in groups[index])
    carved_texts = sum(sizes[index] for index in carved)
    logger.info(
        "%s: carved %d distinct queries (asked %g %% of %d) in %d of %d groups linked by shared relevant documents, "
        "so none of their relevant documents is a training positive (data.%s_split_by=document).",
        name,
        carved_texts,
        fraction * 100,
        distinct,
        len(carved),
        len(groups),
        name,
    )
    return carved_ids, f" by document: {carved_texts} in {len(carved)} of {len(groups)} groups"


def shipped_split(retrieval_set: RetrievalSet, name: str, path: Path) -> EvalSplit:
    """Take an evaluation split as a BEIR folder ships it, ranking the folder's whole corpus.

    Args:
        retrieval_set: The loaded folder.
        name: A loaded split, e.g. ``"test"``.
        path: Its qrels file.

    Returns:
        The split, with every judged query and all its judgements (scores <= 0 included).

    Raises:
        DataError: naming ``path`` and the split when no judgement has a score > 0 (nothing to evaluate).
    """
    qrels = retrieval_set.qrels[name]
    if not any(score > 0 for judgements in qrels.values() for score in judgements.values()):
        raise DataError(path, None, None, f"split '{name}': no judgement with score > 0, nothing to evaluate")
    return EvalSplit(
        name=name,
        corpus=retrieval_set.corpus,
        queries={query_id: retrieval_set.queries[query_id] for query_id in qrels},
        qrels={query_id: dict(judgements) for query_id, judgements in qrels.items()},
        source=str(path),
    )


def normalized_texts(split: EvalSplit) -> set[str]:
    """Return the normalised texts of a split's queries (what training queries must not equal)."""
    return {normalize_query(text) for text in split.queries.values()}


def parse_dataset_spec(spec: str, default_split: str = "test") -> tuple[Path, str]:
    """Split ``FOLDER`` or ``FOLDER:SPLIT`` into the folder and the split name.

    The text after the last ``:`` is a split only when it is a plain name (letters, digits, ``_``, ``-``) and the
    text before it is an existing folder, so a folder whose name holds a colon still works.

    Returns:
        ``(folder, split)``.
    """
    folder, _, split = spec.rpartition(":")
    if folder and split and split.replace("_", "").replace("-", "").isalnum() and Path(folder).expanduser().is_dir():
        return Path(folder).expanduser(), split
    return Path(spec).expanduser(), default_split


def load_extra_split(spec: str) -> EvalSplit:
    """Load an out-of-domain evaluation set (``eval.extra_datasets``) as an :class:`EvalSplit` named ``spec``.

    Args:
        spec: ``FOLDER`` (its test split) or ``FOLDER:SPLIT``, a BEIR folder.

    Returns:
        The split over the folder's whole corpus; ``source`` names the qrels file.

    Raises:
        DataError: naming the folder or file when it is missing, malformed or has no judgement > 0.
    """
    folder, split = parse_dataset_spec(spec)
    qrels_file = folder / QRELS_DIR / f"{split}.tsv"
    with reading(folder):
        if not folder.is_dir():
            raise DataError(folder, None, None, "eval.extra_datasets: folder not found")
        if not qrels_file.is_file():
            raise DataError(qrels_file, None, None, f"eval.extra_datasets: no split '{split}' in this folder")
    loaded = shipped_split(load_beir(folder, splits=[split]), split, qrels_file)
    return EvalSplit(spec, loaded.corpus, loaded.queries, loaded.qrels, loaded.source)
