"""Turn the user's data into what a run consumes: training examples and honest dev and test splits.

Every split is a set of queries: dev picks the checkpoint, test is held out and only reported. Splits come as a BEIR
folder ships them or are carved by query, or by document (``data.test_split_by``), seeded and deterministic, out of the
folder's train qrels or, without those, out of the training file; test is carved first, then dev. No query id is in two
splits, and no training query has the text (case and whitespace ignored) of a dev or test query. All checks run before
any model is loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from embedtune.config import DataConfig
from embedtune.data.beir import CORPUS_FILE, QRELS_DIR, QUERIES_FILE, check_split_name, examples_from_qrels, load_beir
from embedtune.data.document_groups import relevant_texts, without_relevant_pairs, without_relevant_positives
from embedtune.data.eval_splits import (
    BY_DOCUMENT,
    QueryPool,
    carve_split,
    normalized_texts,
    pool_from_examples,
    pool_from_qrels,
    shipped_split,
)
from embedtune.data.feature_weights import FeatureWeights, load_feature_weights
from embedtune.data.mix import MixSource, load_mix
from embedtune.data.pairs import PairExample, is_pairs_file, load_pair_groups, pairs_outside, pairs_within
from embedtune.data.splits import DEV_SPLIT, TEST_SPLIT, TRAIN_SPLIT, check_disjoint_splits, normalize_query
from embedtune.data.training_file import load_triplets
from embedtune.data.types import EvalSplit, RetrievalSet, TrainingExample
from embedtune.errors import DataError, reading, shorten

__all__ = ["EvalSplit", "PreparedData", "examples_from_qrels", "prepare_data"]

logger = logging.getLogger(__name__)

HELD_OUT_ROLE = "test"
"""``PreparedData.report_role`` when the reported split is held out (never used for selection)."""
SELECTION_ROLE = "selection"
"""``PreparedData.report_role`` when the reported split is dev, the one that selected the checkpoint."""


@dataclass
class PreparedData:
    """Validated data of one run.

    Attributes:
        train_examples: Training records (one query, its positives and weighted hard negatives each).
        dev: The selection split, evaluated during training to pick the checkpoint.
        report: The split reported at the end, base vs fine-tuned: the held-out test split, or ``dev`` itself
            when the user asked for no test split (``data.test_fraction: 0`` or ``data.eval_split: dev``).
        report_role: ``"test"`` when ``report`` is held out, ``"selection"`` when it is ``dev``.
        files: Input files, for hashing into the run folder.
        counts: ``train_queries`` (distinct training queries), ``train_examples``, ``dev_queries``,
            ``test_queries`` (queries of the held-out test split, 0 without one) and ``dropped_duplicates``
            (training examples or queries dropped because their text is a dev or test query's); with a pairs file
            also ``train_pairs``; with ``data.mix`` also ``mix_examples`` (all sources).
        train_pairs: With a labelled-pairs training file, the pairs left to train on (every pair whose ``text1`` is
            no dev or test query, those of a ``text1`` without a relevant pair included); ``train_examples`` then
            holds the same queries grouped. ``None`` for triplets or BEIR training data.
        eval_pairs: With a labelled-pairs file, the pairs of the dev and of the reported split's queries
            (``{"dev": [...], "report": [...]}``), for pair diagnostics; ``None`` otherwise.
        mix: The ``data.mix`` sources (:mod:`embedtune.data.mix`), each trained as its own dataset; empty without.
    """

    train_examples: list[TrainingExample]
    dev: EvalSplit
    report: EvalSplit
    report_role: str
    files: list[Path]
    counts: dict[str, int]
    train_pairs: list[PairExample] | None = None
    eval_pairs: dict[str, list[PairExample]] | None = None
    mix: list[MixSource] = field(default_factory=list)

    def without_test(self) -> PreparedData:
        """Return the same data reporting dev (the selection split) instead of test, so test is never evaluated.

        Training and dev are unchanged (the test queries stay held out of training); only what is reported moves.
        """
        pairs = None if self.eval_pairs is None else {"dev": self.eval_pairs["dev"], "report": self.eval_pairs["dev"]}
        return replace(self, report=self.dev, report_role=SELECTION_ROLE, eval_pairs=pairs)


@dataclass
class _Sources:
    """The loaded inputs: a BEIR folder (its train, dev and test qrels as present) and/or a training file."""

    folder: RetrievalSet | None
    qrels_files: dict[str, Path]
    train_file: Path | None
    examples: list[TrainingExample]
    pairs: list[PairExample] | None = None
    feature_weights_file: Path | None = None

    def files(self) -> list[Path]:
        """Return the input files read: the folder's corpus, queries and loaded qrels, the training file, weights."""
        files = []
        if self.folder is not None and self.folder.source is not None:
            files += [self.folder.source / CORPUS_FILE, self.folder.source / QUERIES_FILE]
            files += sorted(self.qrels_files.values())
        files += [self.train_file] if self.train_file is not None else []
        return files + ([self.feature_weights_file] if self.feature_weights_file is not None else [])


@dataclass
class _Pools:
    """What splits are carved from: the folder's train qrels when present, else the training file's queries."""

    folder_train: QueryPool | None
    training_file: QueryPool | None

    def carve(
        self, name: str, fraction: float, seed: int, setting: str, exclude_texts: set[str], by: str
    ) -> EvalSplit:
        """Carve a split out of the carving pool (see :func:`carve_split`), keeping the rest of the pool."""
        if self.folder_train is not None:
            self.folder_train, split = carve_split(self.folder_train, name, fraction, seed, setting, exclude_texts, by)
        else:
            assert self.training_file is not None, "prepare_data checks that some training data exists"
            self.training_file, split = carve_split(
                self.training_file, name, fraction, seed, setting, exclude_texts, by
            )
        return split


def prepare_data(config: DataConfig) -> PreparedData:
    """Load and validate all data of a run and split it honestly, before any model is loaded.

    Sources: a BEIR folder (``config.path``: corpus, queries, ``qrels/{train,dev,test}.tsv`` as present) and/or a
    JSONL training file (``config.train_file``), which replaces the folder's train qrels as training data: either
    FlagEmbedding records or labelled pairs (:mod:`embedtune.data.pairs`, told apart by the first record), whose
    ``text1`` groups stand for queries when carving splits and dropping held-out queries. A weight config
    (``config.feature_weights``) turns the FlagEmbedding records' ``neg_features`` into ``neg_weights``.

    * test: the folder's ``qrels/test.tsv`` (or ``qrels/<eval_split>.tsv`` for another ``config.eval_split``);
      else carved (``test_fraction`` of the queries) from the folder's train qrels, or from the training file
      without those; none when ``test_fraction`` is 0 or ``eval_split`` is ``"dev"``.
    * dev: the folder's ``qrels/dev.tsv``, else carved (``dev_fraction`` of what is left) from the same pool.
    * carving: by query, or with ``config.test_split_by`` ``"document"`` by whole groups of queries linked by shared
      relevant documents (:mod:`embedtune.data.document_groups`), so no carved query has a relevant document that is
      a training positive (a training example or relevant pair that would still have one is dropped and logged);
      dev by ``config.dev_split_by`` when set, by document also beside a shipped test split.
    * training: the training file's examples, else one example per train query (relevant documents as positives),
      minus the queries carved out, minus those whose normalised text equals a dev or test query's (counted in
      ``counts["dropped_duplicates"]`` and logged); with a pairs file, ``train_pairs`` likewise.

    Splits from the folder rank the folder's corpus; splits carved from the file rank every passage of the file.

    Args:
        config: The data settings.

    Returns:
        The prepared data; ``report`` is ``dev`` (role ``"selection"``) when there is no test split.

    Raises:
        DataError: naming file, line and field for malformed input; naming both qrels files when a query id is
            judged in two shipped splits; naming the qrels file of an evaluation split without any judgement
            > 0 (the train split's too, when it is what the run trains on or carves from); naming the file and
            setting when too few queries are left to carve a split, or (by document) when they form one linked
            group, or when the reported split (or dev, with ``dev_split_by``) is shipped; naming the folder when
            ``config.eval_split`` is missing from it, the ``qrels`` folder when it cannot be read; naming the
            training source when no example is left;
            naming the weight config when it is malformed (see :func:`load_feature_weights`) or given without
            FlagEmbedding records in ``config.train_file``.
        ValueError: when neither ``config.path`` nor ``config.train_file`` is set, or ``config.eval_split`` is not
            a plain split name, or names a split other than dev/test without a BEIR folder.
    """
    sources = _load_sources(config)
    pools = _Pools(
        folder_train=_folder_train_pool(sources),
        training_file=pool_from_examples(sources.examples, sources.train_file) if sources.train_file else None,
    )
    dev, test, held_out_texts = _eval_splits(config, sources, pools)
    carving = {TEST_SPLIT: config.test_split_by, DEV_SPLIT: config.dev_carving}
    carved = [split for split in (dev, test) if split is not None and split.name not in sources.qrels_files]
    held_out_docs = relevant_texts(split for split in carved if carving[split.name] == BY_DOCUMENT)
    train_examples, train_queries, dropped = _training_examples(sources, pools, held_out_texts, held_out_docs)
    report, report_role = _report_split(config, dev, test)
    train_pairs = None
    if sources.pairs is not None:
        train_pairs = without_relevant_pairs(pairs_outside(sources.pairs, held_out_texts), held_out_docs)
    counts = {
        "train_queries": train_queries,
        "train_examples": len(train_examples),
        "dev_queries": len(dev.queries),
        "test_queries": len(test.queries) if test is not None else 0,
        "dropped_duplicates": dropped,
    }
    eval_pairs = None
    if sources.pairs is not None:
        counts["train_pairs"] = len(train_pairs)
        eval_pairs = {role: pairs_within(sources.pairs, split) for role, split in (("dev", dev), ("report", report))}
    mix = load_mix(config.mix, held_out_texts, held_out_docs)
    if mix:
        counts["mix_examples"] = sum(len(source.examples) for source in mix)
    files = sources.files() + [path for source in mix for path in source.files]
    return PreparedData(train_examples, dev, report, report_role, files, counts, train_pairs, eval_pairs, mix)


def _eval_splits(config: DataConfig, sources: _Sources, pools: _Pools) -> tuple[EvalSplit, EvalSplit | None, set[str]]:
    """Return ``(dev, test or None, normalised texts of every held-out query)``: shipped, else carved, test first."""
    shipped = {
        name: shipped_split(sources.folder, name, path)
        for name, path in sources.qrels_files.items()
        if name != TRAIN_SPLIT and sources.folder is not None
    }
    held_out_texts = set().union(*(normalized_texts(split) for split in shipped.values()))
    _check_carved_report(config, sources, shipped)
    test = shipped.get(_test_split_name(config))
    if test is None and config.eval_split == TEST_SPLIT and config.test_fraction > 0:
        test = pools.carve(
            TEST_SPLIT, config.test_fraction, config.split_seed, "test_fraction", held_out_texts, config.test_split_by
        )
        held_out_texts |= normalized_texts(test)
    dev = shipped.get(DEV_SPLIT)
    if dev is None:
        dev = pools.carve(
            DEV_SPLIT, config.dev_fraction, config.split_seed, "dev_fraction", held_out_texts, config.dev_carving
        )
        held_out_texts |= normalized_texts(dev)
    return dev, test, held_out_texts


def _check_carved_report(config: DataConfig, sources: _Sources, shipped: dict[str, EvalSplit]) -> None:
    """Refuse carving by document a split the folder ships: the reported one (test_split_by), or dev (dev_split_by)."""
    reported = _test_split_name(config)
    if config.eval_split == DEV_SPLIT or (reported not in shipped and config.test_fraction == 0):
        reported = DEV_SPLIT
    if config.test_split_by == BY_DOCUMENT and reported in shipped:
        message = (
            f"data.test_split_by=document carves the reported split so that none of its queries has a relevant "
            f"document that is a training positive, but split '{reported}' ships with the folder and is reported as "
            "is; remove the setting (the report still splits its queries into seen and unseen), and set "
            "data.dev_split_by=document to select on unseen documents"
        )
        raise DataError(sources.qrels_files[reported], None, None, message)
    if config.dev_split_by == BY_DOCUMENT and DEV_SPLIT in shipped:
        message = (
            "data.dev_split_by=document carves dev so that none of its queries has a relevant document that is a "
            "training positive, but this folder ships its dev split, which is used as is; remove the setting"
        )
        raise DataError(sources.qrels_files[DEV_SPLIT], None, None, message)


def _test_split_name(config: DataConfig) -> str:
    """Name of the held-out split: ``config.eval_split`` when it names another split than dev/test, else test."""
    return config.eval_split if config.eval_split not in (TEST_SPLIT, DEV_SPLIT) else TEST_SPLIT


def _load_sources(config: DataConfig) -> _Sources:
    """Load the BEIR folder and the training file the config names, checking they can make a run."""
    if config.path is None and config.train_file is None:
        raise ValueError("no data: set data.path (a BEIR folder) or data.train_file (a JSONL training file)")
    check_split_name(config.eval_split)
    if config.path is None and _test_split_name(config) != TEST_SPLIT:
        raise ValueError(f"data.eval_split {shorten(config.eval_split)} needs data.path, a BEIR folder holding it")
    feature_weights = _load_feature_weights(config)
    folder, qrels_files = _load_folder(config) if config.path is not None else (None, {})
    train_file = Path(config.train_file) if config.train_file is not None else None
    if train_file is not None and is_pairs_file(train_file):
        if feature_weights is not None:
            message = "data.feature_weights only applies to FlagEmbedding records (neg_features), not to a pairs file"
            raise DataError(feature_weights.source or train_file, None, None, message)
        return _pairs_sources(folder, qrels_files, train_file)
    examples = load_triplets(train_file, feature_weights) if train_file is not None else []
    weights_file = feature_weights.source if feature_weights is not None else None
    return _Sources(folder, qrels_files, train_file, examples, feature_weights_file=weights_file)


def _load_feature_weights(config: DataConfig) -> FeatureWeights | None:
    """Load ``config.feature_weights`` (None when unset); it needs ``config.train_file``, whose records it weights."""
    if config.feature_weights is None:
        return None
    path = Path(config.feature_weights)
    if config.train_file is None:
        message = "data.feature_weights only applies to data.train_file records (their neg_features)"
        raise DataError(path, None, None, f"{message}; set data.train_file")
    return load_feature_weights(path)


def _pairs_sources(folder: RetrievalSet | None, qrels_files: dict[str, Path], train_file: Path) -> _Sources:
    """Load a labelled-pairs training file: its pairs, and their ``text1`` groups as the file's examples."""
    pairs, examples = load_pair_groups(train_file)
    return _Sources(folder=folder, qrels_files=qrels_files, train_file=train_file, examples=examples, pairs=pairs)


def _load_folder(config: DataConfig) -> tuple[RetrievalSet, dict[str, Path]]:
    """Load the folder's train, dev and test (or eval_split) qrels as present, and check they share no query id."""
    folder = Path(config.path)
    wanted = dict.fromkeys([TRAIN_SPLIT, DEV_SPLIT, TEST_SPLIT, _test_split_name(config)])
    with reading(folder):
        if not folder.is_dir():
            raise DataError(folder, None, None, "not a folder" if folder.exists() else "folder not found")
    qrels_dir = folder / QRELS_DIR
    candidates = {name: qrels_dir / f"{name}.tsv" for name in wanted}
    with reading(qrels_dir):  # an unreadable qrels/ is named as such, not as the dataset folder
        if qrels_dir.exists() and not qrels_dir.is_dir():
            raise DataError(qrels_dir, None, None, "not a folder (expected qrels/<split>.tsv files in it)")
        present = {name: path for name, path in candidates.items() if path.is_file()}
    test_name = _test_split_name(config)
    if test_name not in present and test_name != TEST_SPLIT:
        found = ", ".join(sorted(present)) or "none"
        missing = shorten(f"{QRELS_DIR}/{test_name}.tsv")
        message = f"data.eval_split {shorten(test_name)}: no {missing} in this folder (found: {found})"
        raise DataError(folder, None, None, message)
    if TRAIN_SPLIT not in present and config.train_file is None:
        message = "file not found: without train qrels, set data.train_file to give training data"
        raise DataError(candidates[TRAIN_SPLIT], None, None, message)
    retrieval_set = load_beir(folder, splits=list(present))
    check_disjoint_splits(retrieval_set.qrels, present)
    return retrieval_set, present


def _folder_train_pool(sources: _Sources) -> QueryPool | None:
    """Pool the folder's train queries with a relevant document, or ``None`` without train qrels."""
    if sources.folder is None or TRAIN_SPLIT not in sources.qrels_files:
        return None
    pool = pool_from_qrels(sources.folder, TRAIN_SPLIT, sources.qrels_files[TRAIN_SPLIT])
    if not pool.queries and sources.train_file is None:
        message = f"split '{TRAIN_SPLIT}': no judgement with score > 0, nothing to train on"
        raise DataError(sources.qrels_files[TRAIN_SPLIT], None, None, message)
    return pool


def _training_examples(
    sources: _Sources, pools: _Pools, held_out_texts: set[str], held_out_docs: set[str]
) -> tuple[list[TrainingExample], int, int]:
    """Return ``(examples, distinct training queries, dropped duplicates)`` once dev and test queries are out.

    With ``held_out_docs`` (carving by document), examples with a positive among them are dropped too and logged.
    """
    if sources.train_file is not None:
        assert pools.training_file is not None, "the training file is always pooled"
        examples, dropped = _file_examples(sources.examples, pools.training_file, held_out_texts)
        origin, path = "examples", sources.train_file
    else:
        assert pools.folder_train is not None, "_load_folder checks that train qrels or a training file exist"
        examples, dropped = _qrels_examples(pools.folder_train, held_out_texts)
        origin, path = "queries", sources.qrels_files[TRAIN_SPLIT]
    if dropped:
        logger.warning(
            "Dropped %d training %s whose query text (ignoring case and whitespace) is a dev or test query.",
            dropped,
            origin,
        )
    examples, linked = without_relevant_positives(examples, held_out_docs)
    if linked:
        logger.warning(
            "Dropped %d training %s with a positive that is relevant to a carved dev or test query "
            "(data.test_split_by=document).",
            linked,
            origin,
        )
    distinct = len({normalize_query(example.query) for example in examples})
    train_queries = distinct if sources.train_file is not None else len(examples)
    if not examples:
        message = f"no training example left once the dev and test queries are held out ({dropped + linked} dropped)"
        raise DataError(path, None, None, message)
    return examples, train_queries, dropped


def _file_examples(
    examples: list[TrainingExample], pool: QueryPool, held_out_texts: set[str]
) -> tuple[list[TrainingExample], int]:
    """Keep the file's examples whose query is still in the pool (not carved) and is no dev or test query."""
    remaining = {normalize_query(text) for text in pool.queries.values()}
    candidates = [example for example in examples if normalize_query(example.query) in remaining]
    kept = [example for example in candidates if normalize_query(example.query) not in held_out_texts]
    return kept, len(candidates) - len(kept)


def _qrels_examples(pool: QueryPool, held_out_texts: set[str]) -> tuple[list[TrainingExample], int]:
    """One example per train query left in the pool whose text is no dev or test query's."""
    kept = {
        query_id: judgements
        for query_id, judgements in pool.qrels.items()
        if normalize_query(pool.queries[query_id]) not in held_out_texts
    }
    train_set = RetrievalSet(corpus=pool.corpus, queries=pool.queries, qrels={TRAIN_SPLIT: kept})
    return examples_from_qrels(train_set, TRAIN_SPLIT), len(pool.qrels) - len(kept)


def _report_split(config: DataConfig, dev: EvalSplit, test: EvalSplit | None) -> tuple[EvalSplit, str]:
    """Pick the split reported at the end and its role: test when held out, else dev (the selection split)."""
    if config.eval_split == DEV_SPLIT:
        return dev, SELECTION_ROLE
    if test is None:
        logger.info("No test split (no qrels/test.tsv and data.test_fraction is 0): reporting on dev.")
        return dev, SELECTION_ROLE
    return test, HELD_OUT_ROLE
