"""Turn a folder of raw documents into a BEIR retrieval folder of pseudo-queries (``embedtune prepare docs``).

1. Read the documents (:func:`~embedtune.data.builders.documents.read_documents`).
2. Cut each into passages of at most ``chunk_tokens`` tokens overlapping by at most ``overlap_tokens``
   (:func:`~embedtune.data.builders.chunking.chunk_text`). Identical passages (whitespace normalised) are one corpus
   document, owned by the first document holding it; the later copies are dropped and counted.
3. Make one (query, positive) pair per passage (``ict``, ``crop``) or per titled document (``title``), see
   :mod:`embedtune.data.builders.pair_methods`. An ICT query is a whole sentence of the passage that no neighbouring
   passage shares (so a removed sentence is not left verbatim next door); a crop has at least one token outside the
   overlaps. Each pair draws from its own ``random.Random`` seeded with the seed,
   the method, the document and the passage number, so the same seed always gives the same bytes. A query whose
   text (case and whitespace ignored) was already made is dropped; its passage stays in the corpus unchanged.
4. Split by source document: every query of a document lands in one split
   (:func:`~embedtune.data.builders.documents.assign_source_splits`), so no document is in two splits.

``corpus.jsonl`` holds every passage (``{"_id": "d<n>", "title", "text", "metadata": {"source", "passage"}}``; the
title is the document's title, empty for the ``title`` method where it would be the answer; an ICT positive is the
passage without its query sentence when that was removed). ``queries.jsonl`` holds ``{"_id": "q<n>", "text",
"metadata": {"source", "method"}}``; each ``qrels/<split>.tsv`` judges one positive per query (score 1).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.data.builders.beir_folder import check_destination, write_beir_folder
from embedtune.data.builders.chunking import (
    DEFAULT_TOKENIZER,
    Tokenizer,
    check_chunk_sizes,
    chunk_text,
    load_tokenizer,
    sentence_spans,
)
from embedtune.data.builders.documents import SPLITS, Document, assign_source_splits, read_documents
from embedtune.data.builders.pair_methods import (
    CROP,
    DEFAULT_CROP_RATIO,
    DEFAULT_REMOVE_PROB,
    ICT,
    METHODS,
    TITLE,
    Pair,
    check_crop_ratio,
    check_remove_prob,
    crop_pair,
    ict_pair,
    title_pair,
)
from embedtune.data.builders.sentences import Span
from embedtune.data.builders.squad import check_split_fractions
from embedtune.data.splits import normalize_query
from embedtune.data.types import Qrels
from embedtune.errors import DataError

DEFAULT_SEED = 42
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
"""Default share of source documents per split (train, dev, test)."""


@dataclass(frozen=True)
class SplitCounts:
    """Size of one split.

    Attributes:
        documents: Source documents whose queries are in the split.
        queries: Queries judged in the split.
    """

    documents: int
    queries: int


@dataclass
class DocsSummary:
    """What :func:`build_docs_beir` read, dropped and wrote.

    Attributes:
        source: The folder read.
        out: The BEIR folder written.
        method: ``"ict"``, ``"crop"`` or ``"title"``.
        tokenizer: Name of the tokenizer that counted tokens.
        seed: Seed of the pairs and the split.
        fractions: Share of source documents for train, dev and test.
        files: Files read.
        documents: Documents with text read.
        empty_documents: Documents dropped because they hold no text.
        passages: Passages in ``corpus.jsonl``.
        duplicate_passages: Passages dropped as copies of an earlier one.
        queries: Queries written.
        duplicate_queries: Queries dropped as copies of an earlier one.
        without_query: Passages (``ict``, ``crop``) or documents (``title``) that gave no pair (ICT: fewer than two
            sentences, or no whole sentence outside the parts shared with the neighbouring passages; title: no real
            title).
        sentences_removed: ICT: queries whose sentence was removed from the positive.
        skipped_files: ``(relative path, reason)`` of the files not read.
        splits: Split name -> its counts, for the splits written.
    """

    source: Path
    out: Path
    method: str
    tokenizer: str
    seed: int
    fractions: tuple[float, ...]
    files: int = 0
    documents: int = 0
    empty_documents: int = 0
    passages: int = 0
    duplicate_passages: int = 0
    queries: int = 0
    duplicate_queries: int = 0
    without_query: int = 0
    sentences_removed: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    splits: dict[str, SplitCounts] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Return the summary as lines of text for the terminal.

        Returns:
            A headline naming the source, the folder and the settings, the counts, the skipped files (at most 5 by
            name), then a table of documents and queries per split.
        """
        shares = "/".join(f"{fraction:g}" for fraction in self.fractions)
        unit = "documents" if self.method == TITLE else "passages"
        lines = [
            f"Wrote {self.out} from {self.source} (method {self.method}, tokenizer {self.tokenizer}, "
            f"seed {self.seed}, fractions {shares})",
            f"files read: {self.files}, skipped: {len(self.skipped_files)}; documents: {self.documents} "
            f"({self.empty_documents} empty ones dropped)",
            f"passages: {self.passages} ({self.duplicate_passages} duplicates removed)",
            f"queries: {self.queries} ({self.duplicate_queries} duplicates removed, {self.without_query} {unit} "
            "gave none)",
        ]
        if self.method == ICT:
            lines.append(f"query sentence removed from its positive: {self.sentences_removed} of {self.queries}")
        lines.extend(f"skipped {path}: {reason}" for path, reason in self.skipped_files[:5])
        if len(self.skipped_files) > 5:
            lines.append(f"... and {len(self.skipped_files) - 5} more skipped files")
        lines.append(f"{'split':<6} {'documents':>10} {'queries':>9}")
        lines.extend(f"{name:<6} {counts.documents:>10} {counts.queries:>9}" for name, counts in self.splits.items())
        return lines


@dataclass
class _Passage:
    """A unique passage of a document.

    Its corpus id, the document owning it, its number there, its text, its text in the corpus (an ICT positive loses
    its query sentence), the document's sentences lying wholly inside the part of it no neighbouring passage
    shares, and that part (offsets into ``text``).
    """

    doc_id: str
    document: Document
    index: int
    text: str
    corpus_text: str
    sentences: list[Span]
    own: Span


@dataclass(frozen=True)
class _Query:
    """A kept query: its record and the passage it is judged against."""

    record: dict[str, Any]
    passage: _Passage


@dataclass(frozen=True)
class PairSettings:
    """How pairs are made.

    Attributes:
        method: ``"ict"``, ``"crop"`` or ``"title"``.
        seed: Seed of every random choice.
        remove_prob: ICT: probability that the query sentence is removed from its positive.
        crop_ratio: Crop: shortest and longest query as a share of the passage's tokens.
    """

    method: str = ICT
    seed: int = DEFAULT_SEED
    remove_prob: float = DEFAULT_REMOVE_PROB
    crop_ratio: tuple[float, float] = DEFAULT_CROP_RATIO


def _passages(
    documents: Sequence[Document], tokenizer: Tokenizer, sizes: tuple[int, int], summary: DocsSummary
) -> list[_Passage]:
    """Chunk every document; identical passages (whitespace normalised) are kept once, by the first owner."""
    seen: set[str] = set()
    passages: list[_Passage] = []
    for document in documents:
        sentences = sentence_spans(document.text)
        starts = [start for start, _ in sentences]
        chunks = chunk_text(document.text, tokenizer, *sizes)
        for index, chunk in enumerate(chunks):
            text = document.text[chunk.start : chunk.end]
            key = " ".join(text.split())
            if key in seen:
                summary.duplicate_passages += 1
                continue
            seen.add(key)
            # the part no neighbour shares: after the previous passage's end, before the next one's start
            own_start = max(chunk.start, chunks[index - 1].end) if index else chunk.start
            own_end = min(chunk.end, chunks[index + 1].start) if index + 1 < len(chunks) else chunk.end
            own = (own_start - chunk.start, max(own_start, own_end) - chunk.start)
            inside = []
            for start, end in sentences[bisect.bisect_left(starts, own_start) :]:
                if end > own_end:
                    break
                inside.append((start - chunk.start, end - chunk.start))
            passages.append(_Passage(f"d{len(passages) + 1}", document, index, text, text, inside, own))
    return passages


def _make_pair(passage: _Passage, settings: PairSettings, tokenizer: Tokenizer) -> Pair | None:
    """Make the pair of one passage; ``title`` pairs only come from a titled document's first passage."""
    rng = random.Random(f"{settings.seed}:{settings.method}:{passage.document.source}:{passage.index}")
    if settings.method == ICT:
        return ict_pair(passage.text, rng, settings.remove_prob, passage.sentences)
    if settings.method == CROP:
        return crop_pair(passage.text, tokenizer, rng, settings.crop_ratio, passage.own)
    if passage.index != 0 or not passage.document.title_is_real:
        return None
    return title_pair(passage.document.title, passage.text)


def _queries(
    passages: Sequence[_Passage], settings: PairSettings, tokenizer: Tokenizer, summary: DocsSummary
) -> list[_Query]:
    """Make the pairs, drop repeated query texts and set the ICT positives' corpus text."""
    kept: list[_Query] = []
    seen: set[str] = set()
    for passage in passages:
        pair = _make_pair(passage, settings, tokenizer)
        if pair is None:
            summary.without_query += settings.method != TITLE
            continue
        if normalize_query(pair.query) in seen:
            summary.duplicate_queries += 1
            continue
        seen.add(normalize_query(pair.query))
        passage.corpus_text = pair.document
        metadata: dict[str, Any] = {"source": passage.document.source, "method": settings.method}
        if settings.method == ICT:
            metadata["sentence_removed"] = pair.sentence_removed
            summary.sentences_removed += pair.sentence_removed
        kept.append(_Query({"_id": f"q{len(kept) + 1}", "text": pair.query, "metadata": metadata}, passage))
    if settings.method == TITLE:  # one try per document at most
        summary.without_query = summary.documents - len(kept) - summary.duplicate_queries
    return kept


def build_docs_beir(
    source: str | Path,
    out: str | Path,
    *,
    method: str = ICT,
    tokenizer: Tokenizer | str = DEFAULT_TOKENIZER,
    chunk_tokens: int = 128,
    overlap_tokens: int = 32,
    seed: int = DEFAULT_SEED,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    remove_prob: float = DEFAULT_REMOVE_PROB,
    crop_ratio: Sequence[float] = DEFAULT_CROP_RATIO,
    overwrite: bool = False,
) -> DocsSummary:
    """Build a BEIR folder of pseudo-queries from a folder of raw documents (see the module docstring).

    Everything is read and checked before the tokenizer loads and before anything is written; the folder appears at
    ``out`` only once complete and loads with :func:`embedtune.data.beir.load_beir`.

    Args:
        source: The folder of documents (``.txt``, ``.md``, ``.html``/``.htm``, ``.jsonl``), read recursively.
        out: The BEIR folder to create.
        method: ``"ict"`` (arXiv:1906.00300), ``"crop"`` (arXiv:2112.09118) or ``"title"``.
        tokenizer: A tokenizer, or its name for :func:`~embedtune.data.builders.chunking.load_tokenizer`.
        chunk_tokens: Most tokens per passage.
        overlap_tokens: Most tokens shared by consecutive passages of a document.
        seed: Seed of the pairs and of the split.
        fractions: Share of source documents for train, dev and test; a split with share 0 gets no qrels file.
        remove_prob: ICT: probability that the query sentence is removed from its positive.
        crop_ratio: Crop: ``(shortest, longest)`` query as a share of the passage's tokens.
        overwrite: Replace an existing BEIR folder at ``out``.

    Returns:
        The counts of what was read, dropped and written.

    Raises:
        DataError: for a missing folder or a bad file (see :func:`~embedtune.data.builders.documents.read_documents`),
            no document with text, no pair made, or fewer source documents with queries than splits to fill.
        ValueError: for an unknown method, invalid fractions, sizes, probability or crop ratio, or a tokenizer that
            cannot be loaded.
        FileExistsError: if ``out`` exists and may not be replaced.
        OSError: if the folder cannot be written.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    shares = check_split_fractions(fractions)
    check_chunk_sizes(chunk_tokens, overlap_tokens)
    settings = PairSettings(method, seed, check_remove_prob(remove_prob), check_crop_ratio(crop_ratio))
    source, out = Path(source), Path(out)
    check_destination(out, overwrite)
    folder = read_documents(source)
    if not folder.documents:
        raise DataError(source, None, None, "no document with text found (read: .txt, .md, .html, .htm, .jsonl)")
    tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    summary = DocsSummary(source, out, method, tokenizer.name, seed, shares, files=folder.files)
    summary.documents, summary.empty_documents, summary.skipped_files = (
        len(folder.documents),
        folder.empty,
        folder.skipped,
    )
    passages = _passages(folder.documents, tokenizer, (chunk_tokens, overlap_tokens), summary)
    queries = _queries(passages, settings, tokenizer, summary)
    if not queries:
        raise DataError(source, None, None, f"the {method} method made no query from these documents")
    try:
        assignment = assign_source_splits([query.passage.document.source for query in queries], shares, seed)
    except ValueError as error:
        raise DataError(source, None, None, str(error)) from None
    qrels: dict[str, Qrels] = {name: {} for name, share in zip(SPLITS, shares, strict=True) if share > 0}
    for query in queries:
        qrels[assignment[query.passage.document.source]][query.record["_id"]] = {query.passage.doc_id: 1}
    for name, split_qrels in qrels.items():
        summary.splits[name] = SplitCounts(sum(1 for split in assignment.values() if split == name), len(split_qrels))
    summary.passages, summary.queries = len(passages), len(queries)
    title_of = (lambda passage: "") if method == TITLE else (lambda passage: passage.document.title)
    corpus = (
        {
            "_id": passage.doc_id,
            "title": title_of(passage),
            "text": passage.corpus_text,
            "metadata": {"source": passage.document.source, "passage": passage.index},
        }
        for passage in passages
    )
    write_beir_folder(out, corpus, [query.record for query in queries], qrels, overwrite=overwrite)
    return summary
