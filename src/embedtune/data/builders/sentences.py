"""A simple sentence splitter for Korean and English text, and the location of a QA answer in a cleaned context.

Sentence rule: a sentence ends after ``.``, ``?`` or ``!`` (and any closing quotes or brackets right after it)
that is followed by whitespace, after the full-width ``。``, ``？`` or ``！`` whether or not whitespace follows,
and at every line break. It needs no language model and works for Korean (``...이다. 그는...``) as for English;
its known limitation is that abbreviations followed by a space (``Dr. Smith``, ``e.g. this``) end a sentence too,
which is why an answer may cover more than one sentence (see :func:`sentences_covering`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from embedtune.data.html_text import html_to_text

_CLOSERS = "\"'”’»)\\]」』"
_BREAK = re.compile(rf"([.?!][{_CLOSERS}]*)\s+|([。？！][{_CLOSERS}]*)\s*|\n")

Span = tuple[int, int]
"""A ``(start, end)`` character range, end excluded."""


def split_sentences(text: str) -> list[Span]:
    """Split a text into sentences by the rule of this module.

    Args:
        text: Cleaned text (see :func:`embedtune.data.html_text.html_to_text`).

    Returns:
        The sentences as ``(start, end)`` offsets into ``text``, in order, each stripped of surrounding whitespace and
        non-empty; ``text[start:end]`` is the sentence. Empty for blank text.
    """
    spans: list[Span] = []
    start = 0
    for match in _BREAK.finditer(text):
        ending = match.group(1) or match.group(2) or ""
        _add_span(text, start, match.start() + len(ending), spans)
        start = match.end()
    _add_span(text, start, len(text), spans)
    return spans


def _add_span(text: str, start: int, end: int, spans: list[Span]) -> None:
    """Append ``text[start:end]`` stripped of whitespace to ``spans`` unless it is blank."""
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        offset = start + (len(piece) - len(piece.lstrip()))
        spans.append((offset, offset + len(stripped)))


def sentences_covering(spans: Sequence[Span], answer: Span) -> Span | None:
    """Return the range from the first to the last sentence that overlaps an answer.

    Args:
        spans: Sentences as returned by :func:`split_sentences`.
        answer: The answer's ``(start, end)`` in the same text.

    Returns:
        ``(start of the first overlapping sentence, end of the last one)``, usually one sentence; ``None`` when no
        sentence overlaps the answer.
    """
    start, end = answer
    covering = [span for span in spans if span[0] < end and start < span[1]]
    if not covering:
        return None
    return covering[0][0], covering[-1][1]


def _occurrences(text: str, needle: str) -> list[int]:
    """Return every start offset of ``needle`` in ``text``, overlapping ones included."""
    found: list[int] = []
    position = text.find(needle)
    while position >= 0:
        found.append(position)
        position = text.find(needle, position + 1)
    return found


def locate_answer(original: str, cleaned: str, answer_text: str, answer_start: int | None) -> Span | None:
    """Find an answer in a cleaned context, given its offset in the original (uncleaned) context.

    ``answer_start`` indexes the original context, which cleaning (HTML removal, whitespace normalisation) shifts,
    so the offset is mapped by occurrence: the answer text (cleaned the same way) is searched in the cleaned
    context, line breaks counting as spaces. When it occurs as often there as the original answer text occurs in
    the original context, the occurrence of the same rank as the one at ``answer_start`` is taken; otherwise the
    occurrence nearest to ``answer_start`` scaled by the length ratio of the two contexts. Without ``answer_start``
    the first occurrence is taken.

    Args:
        original: The context as given in the input file.
        cleaned: The cleaned context.
        answer_text: The answer as given in the input file.
        answer_start: Its character offset in ``original``, or ``None`` when unknown.

    Returns:
        The answer's ``(start, end)`` in ``cleaned``, or ``None`` when the cleaned answer text is empty or does not
        occur in the cleaned context.
    """
    needle = html_to_text(answer_text).replace("\n", " ")
    if not needle:
        return None
    found = _occurrences(cleaned.replace("\n", " "), needle)
    if not found:
        return None
    if answer_start is None:
        return found[0], found[0] + len(needle)
    in_original = _occurrences(original, answer_text)
    if answer_start in in_original and len(in_original) == len(found):
        position = found[in_original.index(answer_start)]
    else:
        expected = answer_start * len(cleaned) / max(1, len(original))
        position = min(found, key=lambda offset: (abs(offset - expected), offset))
    return position, position + len(needle)
