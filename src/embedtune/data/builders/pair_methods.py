"""Make (query, positive passage) pairs out of raw passages, without labels.

* ``ict`` — Inverse Cloze Task (Lee et al., 2019, arXiv:1906.00300): the query is a random sentence of the passage;
  with probability ``remove_prob`` (0.9, the paper's rate: it keeps the sentence in its context 10 % of the time) the
  sentence is removed from the positive, so the model must learn more than word overlap. The positive document is
  the passage with the sentence removed (or the whole passage when it is kept).
* ``crop`` — independent cropping (Contriever, Izacard et al., 2021, arXiv:2112.09118): a random span of 10–50 % of
  the passage's tokens. Contriever pairs two independent crops of one passage; for a retrieval set the query is
  one crop and the positive is the *whole* passage, so the corpus stays the real passages.
* ``title`` — a document's title is the query, its first passage the positive (only documents with a real title).

Every random choice comes from the ``random.Random`` passed in, so a seeded generator gives the same pairs.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from embedtune.data.builders.chunking import Tokenizer, sentence_spans
from embedtune.data.builders.sentences import Span

ICT, CROP, TITLE = "ict", "crop", "title"
METHODS = (ICT, CROP, TITLE)
"""The pair methods, as ``--method`` names them."""

DEFAULT_REMOVE_PROB = 0.9
"""ICT: probability that the query sentence is removed from its positive (Lee et al., arXiv:1906.00300)."""

DEFAULT_CROP_RATIO = (0.1, 0.5)
"""Crop: shortest and longest query, as a share of the passage's tokens (Izacard et al., arXiv:2112.09118)."""

MIN_ICT_QUERY_WORDS = 3
"""ICT: a sentence needs at least this many words to be a query (headings and fragments are not)."""


@dataclass(frozen=True)
class Pair:
    """A pseudo-query and its positive document.

    Attributes:
        query: The query text.
        document: The positive document's text.
        sentence_removed: ICT only: whether the query sentence was removed from ``document``.
    """

    query: str
    document: str
    sentence_removed: bool = False


def check_remove_prob(remove_prob: float) -> float:
    """Check the ICT removal probability.

    Args:
        remove_prob: Probability that the query sentence is removed from its positive.

    Returns:
        ``remove_prob`` as a float.

    Raises:
        ValueError: unless it is a number from 0 to 1.
    """
    if isinstance(remove_prob, bool) or not 0.0 <= remove_prob <= 1.0:
        raise ValueError(f"ICT removal probability must be from 0 to 1, got {remove_prob!r}")
    return float(remove_prob)


def check_crop_ratio(ratio: Sequence[float]) -> tuple[float, float]:
    """Check the crop length range.

    Args:
        ratio: ``(shortest, longest)`` crop as a share of the passage's tokens.

    Returns:
        The range as a tuple of floats.

    Raises:
        ValueError: unless ``0 < shortest <= longest <= 1``.
    """
    if len(ratio) != 2 or not 0.0 < ratio[0] <= ratio[1] <= 1.0:
        raise ValueError(f"crop ratio must be two shares with 0 < shortest <= longest <= 1, got {tuple(ratio)}")
    return float(ratio[0]), float(ratio[1])


def ict_pair(
    passage: str, rng: random.Random, remove_prob: float = DEFAULT_REMOVE_PROB, sentences: Sequence[Span] | None = None
) -> Pair | None:
    """Make an Inverse Cloze Task pair (arXiv:1906.00300) from a passage.

    Args:
        passage: The passage text.
        rng: Source of the random choices: the sentence, then whether it is removed.
        remove_prob: Probability that the sentence is removed from the positive.
        sentences: The sentences that may be the query, as ``(start, end)`` offsets into the passage; defaults to
            :func:`~embedtune.data.builders.chunking.sentence_spans` of the passage. A passage cut out of a longer
            text passes the sentences of the text that lie wholly inside it and outside the parts it shares with
            its neighbours, so that a sentence cut in two at the passage's edge is never a query and a removed
            sentence is not left verbatim in a neighbouring passage.

    Returns:
        A pair whose query is one of ``sentences`` (drawn uniformly among those of at least
        :data:`MIN_ICT_QUERY_WORDS` words that are not Markdown headings) and whose document is the passage without
        that sentence (with probability ``remove_prob``) or the whole passage; ``None`` when the passage has fewer
        than two sentences or no candidate sentence.
    """
    own_sentences = sentence_spans(passage)
    spans = own_sentences if sentences is None else sentences
    candidates = [span for span in spans if _is_query_sentence(passage[span[0] : span[1]])]
    if len(own_sentences) < 2 or not candidates:
        return None
    start, end = rng.choice(candidates)
    removed = rng.random() < remove_prob
    document = remove_span(passage, start, end) if removed else passage
    return Pair(query=" ".join(passage[start:end].split()), document=document, sentence_removed=removed)


def _is_query_sentence(sentence: str) -> bool:
    """Whether an ICT sentence may be a query: enough words, and not a Markdown heading."""
    return len(sentence.split()) >= MIN_ICT_QUERY_WORDS and not sentence.startswith("#")


def remove_span(text: str, start: int, end: int) -> str:
    """Remove ``text[start:end]`` and join what is left around it with the stronger of the two gaps.

    Args:
        text: A text.
        start: First character removed.
        end: Character after the last one removed.

    Returns:
        The text without the span, stripped; the two sides are joined by a blank line when either gap held one, else
        a line break when either held one, else a space.
    """
    before, after = text[:start], text[end:]
    left, right = before.rstrip(), after.lstrip()
    gaps = before[len(left) :] + after[: len(after) - len(right)]
    if not left or not right:
        return (left + right).strip()
    separator = "\n\n" if gaps.count("\n") >= 2 else "\n" if "\n" in gaps else " "
    return f"{left}{separator}{right}"


def crop_pair(
    passage: str,
    tokenizer: Tokenizer,
    rng: random.Random,
    ratio: Sequence[float] = DEFAULT_CROP_RATIO,
    own: Span | None = None,
) -> Pair | None:
    """Make an independent-cropping pair (Contriever, arXiv:2112.09118) from a passage.

    Args:
        passage: The passage text.
        tokenizer: Counts the passage's tokens.
        rng: Source of the random choices: the crop's length, then its start.
        ratio: ``(shortest, longest)`` crop as a share of the passage's ``n`` tokens.
        own: The ``(start, end)`` characters of the passage that no neighbouring passage of its document shares
            (overlaps excluded); the crop then has at least one token there, so it never lies wholly in a
            neighbour too. ``None``: the whole passage.

    Returns:
        A pair whose query is a contiguous run of ``L`` tokens of the passage, ``L`` drawn uniformly from
        :func:`crop_length_range`, its start uniformly among the possible ones, and whose document is the whole
        passage; ``None`` when the crop would be the whole passage.
    """
    shortest, longest = check_crop_ratio(ratio)
    tokens = tokenizer.token_spans(passage)
    low, high = crop_length_range(len(tokens), shortest, longest)
    if not tokens or low >= len(tokens):
        return None
    length = rng.randint(low, high)
    earliest, latest = 0, len(tokens) - length
    if own is not None:
        own_first = bisect.bisect_left([start for start, _ in tokens], own[0])
        own_end = bisect.bisect_left([start for start, _ in tokens], own[1])
        if own_first < own_end:  # the crop [first, first + length) must meet [own_first, own_end)
            earliest, latest = max(earliest, own_first - length + 1), min(latest, own_end - 1)
    first = rng.randint(earliest, latest)
    query = " ".join(passage[tokens[first][0] : tokens[first + length - 1][1]].split())
    if not query or query == " ".join(passage.split()):
        return None
    return Pair(query=query, document=passage)


def crop_length_range(count: int, shortest: float, longest: float) -> tuple[int, int]:
    """Return the range of crop lengths, in tokens, for a passage of ``count`` tokens.

    Args:
        count: Tokens in the passage.
        shortest: Shortest crop as a share of ``count``.
        longest: Longest crop as a share of ``count``.

    Returns:
        ``(low, high)``, both inclusive: the whole numbers ``L >= 1`` with ``shortest <= L / count <= longest``;
        when there is none, the one nearest to the middle share (``max(1, round(count * middle))``) alone.
    """
    low = max(1, math.ceil(shortest * count - 1e-9))
    high = math.floor(longest * count + 1e-9)
    if high < low:
        low = high = max(1, round(count * (shortest + longest) / 2))
    return low, high


def title_pair(title: str, first_passage: str) -> Pair | None:
    """Make a title pair: the document's title is the query, its first passage the positive.

    Args:
        title: The document's real title (not a file name).
        first_passage: The text of the document's first passage.

    Returns:
        The pair, or ``None`` for a blank title or a title that is the whole passage.
    """
    query = " ".join(title.split())
    if not query or query == " ".join(first_passage.split()):
        return None
    return Pair(query=query, document=first_passage)
