"""Turn a SQuAD-format QA file (SQuAD v1.1/v2, KorQuAD 1.0, XQuAD) into a BEIR retrieval folder.

* Query: a question (``queries.jsonl``: ``{"_id", "text", "metadata": {"answers": [{"text", "answer_start"}],
  "article": title}}``; ``answer_start`` is the offset in the original context, ``None`` for a plain-string answer).
* Document: a paragraph (``corpus.jsonl``: ``{"_id", "title": article title, "text": cleaned context}``), or with
  ``document="answer-sentence"`` a sentence (see :mod:`embedtune.data.builders.sentences`): every sentence of every
  paragraph is a document, and a question's positive is the sentence holding its answer (the run of sentences
  covering it when the answer crosses a sentence end). Contexts are cleaned by
  :func:`~embedtune.data.html_text.html_to_text`; identical documents (same title and text) are merged into one.
* Unanswerable questions (SQuAD v2 ``is_impossible``, or no answers) are dropped and counted; so are, in
  answer-sentence mode, questions none of whose answers can be found in the cleaned context.
* Splits are by article title (all questions of an article in one split, so no article is in two splits): the
  titles holding kept questions are shuffled with the seed and cut into train/dev/test by the fractions
  (:func:`split_articles`). Every document goes to the one
  ``corpus.jsonl``, as BEIR does; each split has its own ``qrels/<split>.tsv`` (score 1 per positive). A split
  whose fraction is 0 gets no qrels file. The same file, seed and settings always give the same bytes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.data.builders.beir_folder import check_destination, write_beir_folder
from embedtune.data.builders.sentences import Span, locate_answer, sentences_covering, split_sentences
from embedtune.data.builders.squad_read import SquadFile, SquadParagraph, SquadQuestion, read_squad
from embedtune.data.splits import DEV_SPLIT, TEST_SPLIT, TRAIN_SPLIT, check_fractions
from embedtune.data.types import Qrels
from embedtune.errors import DataError

SPLITS = (TRAIN_SPLIT, DEV_SPLIT, TEST_SPLIT)
"""Split names, in the order of the fractions."""

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
"""Default share of articles per split (train, dev, test)."""

DEFAULT_SEED = 42

PARAGRAPH = "paragraph"
ANSWER_SENTENCE = "answer-sentence"
DOCUMENT_MODES = (PARAGRAPH, ANSWER_SENTENCE)
"""What a document is: a whole paragraph, or a sentence of one."""


@dataclass(frozen=True)
class SplitCounts:
    """Size of one split.

    Attributes:
        articles: Articles whose questions are in the split.
        queries: Queries judged in the split.
        documents: Distinct documents judged relevant in the split.
    """

    articles: int
    queries: int
    documents: int


@dataclass
class SquadSummary:
    """What :func:`build_squad_beir` read, dropped and wrote.

    Attributes:
        source: The SQuAD-format file read.
        out: The BEIR folder written.
        document: ``"paragraph"`` or ``"answer-sentence"``.
        seed: Seed of the article split.
        fractions: Share of articles for train, dev and test.
        articles: Distinct article titles in the file.
        paragraphs: Paragraphs in the file.
        merged_paragraphs: Paragraphs merged into an identical earlier one (same title and cleaned text).
        documents: Documents in ``corpus.jsonl``.
        questions: Questions kept as queries.
        unanswerable: Questions dropped as unanswerable (``is_impossible`` or no answers).
        unlocated: Questions dropped because no answer was found in the cleaned context (answer-sentence mode).
        splits: Split name -> its counts, for the splits written.
    """

    source: Path
    out: Path
    document: str
    seed: int
    fractions: tuple[float, ...]
    articles: int = 0
    paragraphs: int = 0
    merged_paragraphs: int = 0
    documents: int = 0
    questions: int = 0
    unanswerable: int = 0
    unlocated: int = 0
    splits: dict[str, SplitCounts] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Return the summary as lines of text for the terminal.

        Returns:
            A headline naming the source and the folder, the counts, then a table of articles, queries and documents
            per split.
        """
        shares = "/".join(f"{fraction:g}" for fraction in self.fractions)
        lines = [
            f"Wrote {self.out} from {self.source} ({self.document} documents, seed {self.seed}, fractions {shares})",
            f"articles: {self.articles}, paragraphs: {self.paragraphs} "
            f"({self.merged_paragraphs} identical ones merged), documents: {self.documents}",
            f"questions kept: {self.questions}, unanswerable dropped: {self.unanswerable}",
        ]
        if self.document == ANSWER_SENTENCE:
            lines.append(f"answer not found in the cleaned context, dropped: {self.unlocated}")
        lines.append(f"{'split':<6} {'articles':>9} {'queries':>9} {'documents':>10}")
        for name, counts in self.splits.items():
            lines.append(f"{name:<6} {counts.articles:>9} {counts.queries:>9} {counts.documents:>10}")
        return lines


@dataclass(frozen=True)
class _KeptQuery:
    """A kept question: its article title, its ``queries.jsonl`` record and its positive document ids."""

    title: str
    record: dict[str, Any]
    positives: list[str]


class _Corpus:
    """Documents keyed by (title, text): identical ones share one id (``d1``, ``d2``... in order of first use)."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], str] = {}
        self.records: list[dict[str, str]] = []

    def add(self, title: str, text: str) -> str:
        key = (title, text)
        if key not in self.ids:
            self.ids[key] = f"d{len(self.ids) + 1}"
            self.records.append({"_id": self.ids[key], "title": title, "text": text})
        return self.ids[key]


def check_split_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Check the train/dev/test shares of articles.

    Args:
        fractions: Three shares (train, dev, test).

    Returns:
        The shares as a tuple of floats.

    Raises:
        ValueError: unless they are three finite, non-negative numbers summing to 1.
    """
    shares = tuple(float(fraction) for fraction in fractions)
    if not all(math.isfinite(share) for share in shares):
        raise ValueError(f"fractions must be finite numbers, got {shares}")
    check_fractions(SPLITS, shares)
    return shares[0], shares[1], shares[2]


def split_sizes(count: int, fractions: Sequence[float]) -> list[int]:
    """Share ``count`` articles among train, dev and test.

    Args:
        count: Number of articles.
        fractions: Share of articles per split (see :func:`check_split_fractions`).

    Returns:
        One size per split, summing to ``count``: ``count * share`` rounded by the largest-remainder method, then
        each split with a positive share that got none takes one from the largest split.

    Raises:
        ValueError: if ``fractions`` is invalid, or ``count`` is smaller than the number of positive shares.
    """
    shares = check_split_fractions(fractions)
    needed = sum(1 for share in shares if share > 0)
    if count < needed:
        raise ValueError(f"fractions {shares} need at least {needed} articles with answerable questions, got {count}")
    ideal = [count * share for share in shares]
    sizes = [math.floor(value) for value in ideal]
    by_remainder = sorted(range(len(sizes)), key=lambda index: (sizes[index] - ideal[index], index))
    for index in by_remainder[: count - sum(sizes)]:
        sizes[index] += 1
    for index, share in enumerate(shares):
        if share > 0 and sizes[index] == 0:
            sizes[max(range(len(sizes)), key=lambda other: sizes[other])] -= 1
            sizes[index] += 1
    return sizes


def split_articles(titles: Iterable[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Assign article titles to train/dev/test, seeded and deterministic whatever the input order.

    The distinct titles are sorted and shuffled with ``random.Random(seed)`` (as
    :func:`~embedtune.data.splits.carve_queries` does); the first :func:`split_sizes` ``[0]`` go to train, the next
    ones to dev, the rest to test.

    Args:
        titles: Article titles (duplicates ignored).
        fractions: Share of articles for train, dev and test (see :func:`check_split_fractions`); each positive
            share gets at least one article.
        seed: Seed of the shuffle.

    Returns:
        Title -> split name.

    Raises:
        ValueError: if ``fractions`` is invalid, or there are fewer titles than splits with a positive share.
    """
    shuffled = sorted(set(titles))
    sizes = split_sizes(len(shuffled), fractions)
    random.Random(seed).shuffle(shuffled)
    assignment: dict[str, str] = {}
    start = 0
    for name, size in zip(SPLITS, sizes, strict=True):
        assignment.update(dict.fromkeys(shuffled[start : start + size], name))
        start += size
    return assignment


def _query_record(question: SquadQuestion, title: str) -> dict[str, Any]:
    """Return the ``queries.jsonl`` record of a question."""
    answers = [{"text": answer.text, "answer_start": answer.start} for answer in question.answers]
    return {"_id": question.id, "text": question.text, "metadata": {"answers": answers, "article": title}}


def _sentence_positives(
    paragraph: SquadParagraph, spans: Sequence[Span], question: SquadQuestion, title: str, corpus: _Corpus
) -> list[str]:
    """Return the ids of the sentences (or sentence runs) holding the question's answers; adds runs to the corpus."""
    positives: dict[str, None] = {}
    for answer in question.answers:
        located = locate_answer(paragraph.context, paragraph.text, answer.text, answer.start)
        covering = None if located is None else sentences_covering(spans, located)
        if covering is not None:
            positives[corpus.add(title, paragraph.text[covering[0] : covering[1]])] = None
    return list(positives)


def _collect(squad: SquadFile, document: str, summary: SquadSummary) -> tuple[_Corpus, list[_KeptQuery]]:
    """Build the corpus and the kept queries; counts paragraphs, merges and unlocated answers into ``summary``."""
    corpus = _Corpus()
    seen: set[tuple[str, str]] = set()
    kept: list[_KeptQuery] = []
    for article in squad.articles:
        for paragraph in article.paragraphs:
            summary.paragraphs += 1
            summary.merged_paragraphs += (article.title, paragraph.text) in seen
            seen.add((article.title, paragraph.text))
            if document == PARAGRAPH:
                paragraph_id = corpus.add(article.title, paragraph.text)
            else:
                spans = split_sentences(paragraph.text)
                for start, end in spans:
                    corpus.add(article.title, paragraph.text[start:end])
            for question in paragraph.questions:
                if document == PARAGRAPH:
                    positives = [paragraph_id]
                else:
                    positives = _sentence_positives(paragraph, spans, question, article.title, corpus)
                if not positives:
                    summary.unlocated += 1
                    continue
                kept.append(_KeptQuery(article.title, _query_record(question, article.title), positives))
    return corpus, kept


def build_squad_beir(
    source: str | Path,
    out: str | Path,
    *,
    document: str = PARAGRAPH,
    seed: int = DEFAULT_SEED,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    overwrite: bool = False,
) -> SquadSummary:
    """Convert a SQuAD-format QA file into a BEIR folder (see the module docstring for the mapping).

    The whole file is read and checked before anything is written; the folder appears at ``out`` only once
    complete (:func:`~embedtune.data.builders.beir_folder.write_beir_folder`) and loads with
    :func:`embedtune.data.beir.load_beir`.

    Args:
        source: The SQuAD-format JSON file.
        out: The BEIR folder to create.
        document: ``"paragraph"`` (default) or ``"answer-sentence"``.
        seed: Seed of the article split.
        fractions: Share of articles for train, dev and test; a split with share 0 gets no qrels file.
        overwrite: Replace an existing BEIR folder at ``out``.

    Returns:
        The counts of what was read, dropped and written.

    Raises:
        DataError: for a bad input file (see :func:`~embedtune.data.builders.squad_read.read_squad`), a file with no
            answerable question left, or fewer articles with questions than splits to fill (field ``data``).
        ValueError: for an unknown ``document`` mode or invalid ``fractions``.
        FileExistsError: if ``out`` exists and may not be replaced (see
            :func:`~embedtune.data.builders.beir_folder.check_destination`).
        OSError: if the folder cannot be written.
    """
    if document not in DOCUMENT_MODES:
        raise ValueError(f"document must be one of {', '.join(DOCUMENT_MODES)}, got {document!r}")
    shares = check_split_fractions(fractions)
    source, out = Path(source), Path(out)
    check_destination(out, overwrite)
    squad = read_squad(source)
    summary = SquadSummary(source, out, document, seed, shares, unanswerable=squad.unanswerable)
    summary.articles = len({article.title for article in squad.articles})
    corpus, kept = _collect(squad, document, summary)
    if not kept:
        where = " whose answer is found in its context" if document == ANSWER_SENTENCE else ""
        raise DataError(source, None, "data", f"no answerable question{where}; nothing to build a retrieval set from")
    try:
        assignment = split_articles([query.title for query in kept], shares, seed)
    except ValueError as error:
        raise DataError(source, None, "data", str(error)) from None
    qrels: dict[str, Qrels] = {name: {} for name, share in zip(SPLITS, shares, strict=True) if share > 0}
    for query in kept:
        qrels[assignment[query.title]][query.record["_id"]] = dict.fromkeys(query.positives, 1)
    for name, split_qrels in qrels.items():
        articles = sum(1 for split in assignment.values() if split == name)
        documents = len({doc_id for judgements in split_qrels.values() for doc_id in judgements})
        summary.splits[name] = SplitCounts(articles, len(split_qrels), documents)
    summary.documents = len(corpus.records)
    summary.questions = len(kept)
    write_beir_folder(out, corpus.records, [query.record for query in kept], qrels, overwrite=overwrite)
    return summary
