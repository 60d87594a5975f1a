"""Hard-negative mining: give every training query negatives that a retriever ranks high but that are not relevant.

Input is a BEIR folder (the queries of one qrels split, their relevant documents as positives, the folder's corpus)
or a training JSONL file (queries with ``pos``; the corpus is a separate file, or every ``pos``/``neg`` passage of
the training file). Output is a training file (:func:`embedtune.data.training_file.write_triplets`) with ``pos_ids``,
``pos_scores``, ``neg``, ``neg_ids``, ``neg_scores`` and, for the merged retriever, ``neg_sources``.

Per query, candidates are the ``range_max + P + 1`` best documents of the retriever (``P``: most positives of any
query), or both retrievers' lists interleaved (:func:`~embedtune.mining.candidates.merge_candidates`). Then, as
in ``sentence_transformers.util.mine_hard_negatives`` (same option names and meaning), these are set aside: known
positives (by document id and by normalised text), the query's own text, repeats of a text already kept, and
candidates scoring above ``positive - margin``, ``positive - |positive| * relative_margin`` or ``max_score``. Ranks
are 0-based among the candidates left; ``num_negatives`` are taken from ranks ``[range_min, range_max)``, the first
ones (``top``) or a seeded sample (``random``). Scores are the dense model's similarity (also for BM25-only
candidates of the merged retriever), or BM25 scores for the BM25 retriever alone. The *positive score* of a query is
its **best** positive's score: a weakly matching extra positive (SciFact has several per query) would otherwise pull
the margin threshold down and throw away the genuinely hard negatives (``mine_hard_negatives`` uses the lowest).

Why not call ``mine_hard_negatives`` (sentence-transformers 6.2)? It identifies positives by text only and
deduplicates the corpus by text, so document ids (``pos_ids``/``neg_ids``, qrels positives with differing texts)
are lost; it retrieves from the dense model alone, so BM25 candidates cannot be merged, scored by the model or
traced to their retriever; its exact search scores up to ``faiss_batch_size`` (16,384) queries against the whole
corpus at once, a ``16,384 x n_docs`` matrix (65 GB of float32 for a million documents); and it works on
``datasets.Dataset`` rows of one positive each. So candidates are generated here, with bounded memory
(:func:`~embedtune.search.top_k.chunked_top_k`), and its filtering rules are kept.

Optional ``neg_weights`` (:func:`hardness_weights`): ``w = clip(1 - alpha * (g - mean_g) / std_g, 0.5, 2.0)`` where
``g = positive_score - negative_score`` is a negative's gap below its query's best positive, and ``mean_g``,
``std_g`` are taken over every mined negative of the file: a negative closer to its positive than usual (harder)
weighs up to 2, a far one down to 0.5, a typical one 1.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedtune.config import ConfigError
from embedtune.data.beir import QRELS_DIR, load_beir
from embedtune.data.splits import normalize_query
from embedtune.data.training_file import load_triplets
from embedtune.data.types import TrainingExample
from embedtune.errors import DataError, shorten
from embedtune.mining.candidates import (
    CandidateRetrieval,
    DenseEncoder,
    DropCounts,
    MiningInput,
    build_queries,
    select_negatives,
)
from embedtune.mining.output import WEIGHT_MAX as WEIGHT_MAX
from embedtune.mining.output import WEIGHT_MIN as WEIGHT_MIN
from embedtune.mining.output import MiningStats, build_example, hardness_weights, peak_rss_bytes
from embedtune.search.corpus import load_search_corpus
from embedtune.search.top_k import DEFAULT_CHUNK_SIZE, SEARCH_KINDS

RETRIEVERS = ("dense", "bm25", "both")
SAMPLING_STRATEGIES = ("top", "random")


@dataclass(frozen=True)
class MiningSettings:
    """How to mine (option names and meaning as in ``sentence_transformers.util.mine_hard_negatives``).

    Attributes:
        retriever: ``dense`` (the model), ``bm25`` (no model needed) or ``both`` (lists merged, dense scores).
        range_min: First rank kept, 0-based among the candidates left after exclusions and filters.
        range_max: Rank after the last one kept.
        num_negatives: Most negatives per query.
        sampling_strategy: ``top`` (the best-ranked of the window) or ``random`` (seeded sample of the window).
        margin: Drop candidates scoring above ``positive - margin`` (``absolute_margin`` in sentence-transformers).
        relative_margin: Drop candidates scoring above ``positive - |positive| * relative_margin``.
        max_score: Drop candidates scoring above it (likely false negatives).
        seed: Seed of ``random`` sampling (each query draws from ``Random(f"{seed}:{query_id}")``).
        search: Dense search: ``exact``, ``hnsw``, ``ivf`` or ``auto`` (exact up to 1,000,000 documents).
        chunk_size: Documents per scored block of exact search.
        query_batch_size: Queries per scored block of exact search.
        weights: Write ``neg_weights`` from the scores (:func:`hardness_weights`).
        weight_alpha: Strength of the hardness weights, ``>= 0``.
        features_from_sources: Also write ``neg_features`` equal to ``neg_sources`` (``["dense"]``, ``["bm25"]`` or
            ``["dense", "bm25"]``), so a weight config (``data.feature_weights``) can price each negative by the
            retriever that found it; needs ``retriever == "both"`` and excludes ``weights``.
    """

    retriever: str = "dense"
    range_min: int = 10
    range_max: int = 100
    num_negatives: int = 5
    sampling_strategy: str = "top"
    margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    seed: int = 42
    search: str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    query_batch_size: int = 1024
    weights: bool = False
    weight_alpha: float = 0.5
    features_from_sources: bool = False

    def check(self) -> None:
        """Check every setting.

        Raises:
            ConfigError: naming the command-line option (``--range-max`` ...) of the first bad setting.
        """
        _choice("--retriever", self.retriever, RETRIEVERS)
        _choice("--sampling", self.sampling_strategy, SAMPLING_STRATEGIES)
        _choice("--search", self.search, SEARCH_KINDS)
        counts = {"--num-negatives": self.num_negatives, "--chunk-size": self.chunk_size}
        for option, value in (counts | {"--query-batch-size": self.query_batch_size}).items():
            _require(_is_int(value) and value >= 1, option, f"must be a positive integer, got {value!r}")
        _require(_is_int(self.seed), "--seed", f"must be an integer, got {self.seed!r}")
        _require(
            _is_int(self.range_min) and self.range_min >= 0, "--range-min", f"must be >= 0, got {self.range_min!r}"
        )
        lowest, highest = self.range_min, self.range_max
        _require(
            _is_int(highest) and highest > lowest,
            "--range-max",
            f"must exceed --range-min ({lowest}), got {highest!r}",
        )
        window = highest - lowest
        message = f"{self.num_negatives} do not fit the rank window [{lowest}, {highest}) of {window} ranks"
        _require(self.num_negatives <= window, "--num-negatives", message)
        for option, value in (("--margin", self.margin), ("--max-score", self.max_score)):
            _require(value is None or _is_finite(value), option, f"must be a finite number, got {value!r}")
        for option, value in (("--relative-margin", self.relative_margin), ("--weight-alpha", self.weight_alpha)):
            _require(value is None or _is_finite(value) and value >= 0, option, f"must be >= 0, got {value!r}")
        if self.features_from_sources:
            message = f"tags negatives by the retriever that found them: needs --retriever both, got {self.retriever}"
            _require(self.retriever == "both", "--features-from-sources", message)
            message = "a record gives neg_weights or neg_features, not both: drop --weights"
            _require(not self.weights, "--features-from-sources", message)


def load_mining_beir(folder: str | Path, split: str = "train") -> MiningInput:
    """Read the queries of one split of a BEIR folder, their relevant documents (score > 0) as positives.

    Args:
        folder: The BEIR folder.
        split: The qrels split whose queries are mined.

    Returns:
        The folder's corpus and the split's queries in qrels order; queries without a relevant document are
        counted in ``skipped_queries``.

    Raises:
        DataError: for any invalid file (see :func:`embedtune.data.beir.load_beir`), or a split without a query
            that has a relevant document.
        ValueError: if ``split`` is not a plain split name.
    """
    retrieval_set = load_beir(folder, splits=[split])
    doc_ids, texts = list(retrieval_set.corpus), list(retrieval_set.corpus.values())
    rows = {doc_id: row for row, doc_id in enumerate(doc_ids)}
    drafts, skipped = [], 0
    for query_id, judgements in retrieval_set.qrels[split].items():
        pos_ids = tuple(doc_id for doc_id, relevance in judgements.items() if relevance > 0)
        if not pos_ids:
            skipped += 1
            continue
        pos = tuple(retrieval_set.corpus[doc_id] for doc_id in pos_ids)
        positive_rows = tuple(rows[doc_id] for doc_id in pos_ids)
        drafts.append((query_id, retrieval_set.queries[query_id], pos, pos_ids, positive_rows, None))
    if not drafts:
        path = Path(folder) / QRELS_DIR / f"{split}.tsv"
        raise DataError(path, None, None, "no query with a relevant document (score > 0): nothing to mine")
    return MiningInput(doc_ids, texts, build_queries(drafts), f"{folder} ({split} split)", skipped)


def load_mining_jsonl(path: str | Path, corpus: str | Path | None = None) -> MiningInput:
    """Read the queries and positives of a training JSONL file (its ``neg`` entries are not reused as negatives).

    Args:
        path: The training file (:func:`embedtune.data.training_file.load_triplets`).
        corpus: Documents to mine from (a BEIR ``corpus.jsonl``, ``{"id", "text"}`` JSONL or BEIR folder); ``None``
            uses every distinct ``pos`` and ``neg`` passage of the file. Positives missing from it are added.

    Returns:
        One query per record, in file order; ``query_id`` is the record's own or ``record<N>`` (1-based). A
        positive is matched to the corpus by its ``pos_ids`` entry, else by normalised text; passages without an id
        get ``p0``, ``p1``, ...

    Raises:
        DataError: for an invalid training or corpus file, or (without ``corpus``) a ``pos_ids``/``neg_ids`` id
            given to two different passages.
    """
    path = Path(path)
    examples = load_triplets(path)
    table = _PassageTable(path, corpus is not None)
    table.reserved.update(doc_id for example in examples for doc_id in example.pos_ids + example.neg_ids)
    if corpus is not None:
        documents = load_search_corpus(corpus)
        table.add_corpus(documents, {normalize_query(text) for example in examples for text in example.pos})
    drafts = []
    for number, example in enumerate(examples, start=1):
        rows = tuple(table.row(text, _nth(example.pos_ids, i), "pos_ids") for i, text in enumerate(example.pos))
        if corpus is None:
            for i, text in enumerate(example.neg):
                table.row(text, _nth(example.neg_ids, i), "neg_ids")
        query_id = example.query_id or f"record{number}"
        pos_ids = tuple(table.doc_ids[row] for row in rows)
        drafts.append((query_id, example.query, example.pos, pos_ids, rows, example.phase))
    return MiningInput(table.doc_ids, table.texts, build_queries(drafts), str(path))


def mine_hard_negatives(
    data: MiningInput, settings: MiningSettings, encoder: DenseEncoder | None = None
) -> tuple[list[TrainingExample], MiningStats]:
    """Mine hard negatives for every query of ``data`` (see the module docstring for the rules).

    Args:
        data: Corpus and queries (:func:`load_mining_beir`, :func:`load_mining_jsonl`).
        settings: How to mine.
        encoder: The dense model (:func:`~embedtune.mining.candidates.model_encoder`); required unless
            ``settings.retriever`` is ``bm25``.

    Returns:
        ``(examples, stats)``: one example per query in input order (``neg`` may be empty) with ids, scores (rounded
        to 6 decimals), ``neg_sources`` for ``both`` and ``neg_weights`` when ``settings.weights``; and the counts.

    Raises:
        ConfigError: for a bad setting.
        ValueError: without an encoder for dense mining, for a similarity faiss cannot search, or for NaN
            embeddings.
    """
    settings.check()
    start = time.perf_counter()
    most_positives = max((len(query.pos_rows) for query in data.queries), default=0)
    retrieval = CandidateRetrieval.build(
        data.texts,
        [query.text for query in data.queries],
        settings.range_max + most_positives + 1,
        settings.retriever,
        encoder,
        settings.search,
        settings.chunk_size,
        settings.query_batch_size,
    )
    drops, examples = DropCounts(), []
    for number, query in enumerate(data.queries):
        candidates, pos_scores = retrieval.candidates(number, query.text, query.pos_rows)
        chosen = select_negatives(
            candidates,
            data.doc_ids,
            data.texts,
            query.exclusions,
            max(pos_scores),
            range_min=settings.range_min,
            range_max=settings.range_max,
            num_negatives=settings.num_negatives,
            sampling_strategy=settings.sampling_strategy,
            margin=settings.margin,
            relative_margin=settings.relative_margin,
            max_score=settings.max_score,
            rng=random.Random(f"{settings.seed}:{query.query_id}"),
            drops=drops,
        )
        examples.append(build_example(query, pos_scores, chosen, data, with_sources=settings.retriever == "both"))
    if settings.weights:
        examples = hardness_weights(examples, settings.weight_alpha)
    negatives = sum(len(example.neg) for example in examples)
    stats = MiningStats(
        queries=len(examples),
        negatives=negatives,
        queries_without_negatives=sum(not example.neg for example in examples),
        skipped_queries=data.skipped_queries,
        num_docs=len(data.texts),
        retriever=settings.retriever,
        search=retrieval.search,
        drops=drops,
        seconds=time.perf_counter() - start,
        peak_rss_bytes=peak_rss_bytes(),
    )
    return examples, stats


class _PassageTable:
    """The corpus of a training-file mining run, growing as passages are met; one row per distinct text."""

    def __init__(self, path: Path, trust_ids: bool) -> None:
        self.path, self.trust_ids = path, trust_ids
        self.doc_ids: list[str] = []
        self.texts: list[str] = []
        self.id_rows: dict[str, int] = {}
        self.text_rows: dict[str, int] = {}
        self.reserved: set[str] = set()
        self._fresh = 0

    def add_corpus(self, documents: dict[str, str], wanted_texts: set[str]) -> None:
        """Add a corpus file's documents; index by text only those whose normalised text is in ``wanted_texts``."""
        for doc_id, text in documents.items():
            row = self._append(doc_id, text)
            normalized = normalize_query(text)
            if normalized in wanted_texts:
                self.text_rows.setdefault(normalized, row)

    def row(self, text: str, given_id: str | None, field: str) -> int:
        """Return the row of a passage: by its id (corpus files), else its normalised text, else appended."""
        normalized = normalize_query(text)
        if given_id is not None and given_id in self.id_rows:
            row = self.id_rows[given_id]
            if self.trust_ids or normalize_query(self.texts[row]) == normalized:
                return row
            message = f"id {shorten(given_id)} is given to two different passages"
            raise DataError(self.path, None, field, message)
        if normalized in self.text_rows:
            return self.text_rows[normalized]
        row = self._append(given_id if given_id is not None else self._fresh_id(), text)
        self.text_rows[normalized] = row
        return row

    def _append(self, doc_id: str, text: str) -> int:
        self.id_rows[doc_id] = len(self.doc_ids)
        self.doc_ids.append(doc_id)
        self.texts.append(text)
        return len(self.doc_ids) - 1

    def _fresh_id(self) -> str:
        while f"p{self._fresh}" in self.id_rows or f"p{self._fresh}" in self.reserved:
            self._fresh += 1
        return f"p{self._fresh}"


def _nth(values: tuple[str, ...], index: int) -> str | None:
    """Return ``values[index]``, or ``None`` when the record gave no such list."""
    return values[index] if values else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _choice(option: str, value: object, choices: tuple[str, ...]) -> None:
    _require(value in choices, option, f"choose one of {', '.join(choices)}, got {shorten(value)}")


def _require(condition: bool, option: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{option}: {message}")
