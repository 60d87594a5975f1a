"""Cut documents into passages of at most N tokens with overlap, breaking at paragraph and sentence ends.

Tokens are counted with a tokenizer: a Hugging Face *fast* tokenizer (its ``offset_mapping`` maps every token back
to the characters it came from) or, for speed and tests, :class:`WhitespaceTokenizer` (a token is a run of
non-whitespace). :func:`chunk_text` walks the text greedily: each passage takes as many tokens as the budget allows
and ends, in order of preference, at a paragraph end, a sentence end, a word end, or wherever the budget runs out;
the next passage starts up to ``overlap_tokens`` tokens before, at a sentence start where one lies in that window,
else at a word start. Passages are character ranges of the text that together cover all of it, so no text is lost.

Text layout expected (see :mod:`embedtune.data.builders.documents`): paragraphs separated by a blank line; a single
line break inside a paragraph is a wrapped line, not a sentence end.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from embedtune.data.builders.sentences import Span, split_sentences
from embedtune.model_paths import resolve_model_path

WHITESPACE = "whitespace"
"""``--tokenizer`` value naming :class:`WhitespaceTokenizer`."""

DEFAULT_TOKENIZER = "all-MiniLM-L6-v2"
"""Default tokenizer: the one of the packaged offline model."""

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")


class Tokenizer(Protocol):
    """Anything that maps a text to the character spans of its tokens."""

    name: str

    def token_spans(self, text: str) -> list[Span]:
        """Return the ``(start, end)`` character span of every token of ``text``, in order."""
        ...


class WhitespaceTokenizer:
    """Count a run of non-whitespace characters as one token (fast; needs no model)."""

    name = WHITESPACE

    def token_spans(self, text: str) -> list[Span]:
        """Return the spans of the runs of non-whitespace characters of ``text``.

        Args:
            text: Any text.

        Returns:
            ``(start, end)`` of each word, in order.
        """
        return [match.span() for match in _WORD.finditer(text)]


class HuggingFaceTokenizer:
    """Count tokens with a Hugging Face fast tokenizer, without special tokens.

    Args:
        tokenizer: A fast tokenizer (``tokenizer.is_fast``), e.g. from ``transformers.AutoTokenizer``.
        name: What the tokenizer is called in messages and summaries.

    Raises:
        ValueError: if the tokenizer is not a fast one (only fast tokenizers report character offsets).
    """

    def __init__(self, tokenizer: Any, name: str) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"tokenizer {name!r} is not a fast tokenizer; character offsets are needed")
        self.tokenizer = tokenizer
        self.name = name

    def token_spans(self, text: str) -> list[Span]:
        """Return the character span of every token of ``text`` (``return_offsets_mapping``).

        Args:
            text: Any text, however long (it is never truncated).

        Returns:
            ``(start, end)`` per token, in order; starts never decrease.
        """
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        spans: list[Span] = []
        previous = 0
        for start, end in encoded["offset_mapping"]:
            start = max(start, previous)  # zero-width tokens (0, 0) must not jump back
            spans.append((start, max(start, end)))
            previous = start
        return spans


def load_tokenizer(name: str = DEFAULT_TOKENIZER) -> Tokenizer:
    """Load the tokenizer that counts passage tokens.

    Args:
        name: ``"whitespace"``, or a model folder or name resolved by
            :func:`embedtune.model_paths.resolve_model_path` (``all-MiniLM-L6-v2`` is the packaged offline copy)
            and loaded with ``transformers.AutoTokenizer``.

    Returns:
        The tokenizer.

    Raises:
        ValueError: if the tokenizer cannot be loaded or is not a fast tokenizer.
    """
    if name == WHITESPACE:
        return WhitespaceTokenizer()
    # transformers: only for a model's tokenizer (the whitespace counter needs none)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError) as error:
        detail = " ".join(str(error).split())[:300]
        raise ValueError(f"cannot load the tokenizer {name!r}: {detail}") from None
    return HuggingFaceTokenizer(tokenizer, name)


@dataclass(frozen=True)
class Chunk:
    """One passage of a text.

    Attributes:
        start: Offset of its first character in the text.
        end: Offset after its last character; ``text[start:end]`` is the passage, without surrounding whitespace.
        tokens: Number of tokens it holds (at most the budget).
    """

    start: int
    end: int
    tokens: int


def paragraph_spans(text: str) -> list[Span]:
    """Split a text into paragraphs at blank lines.

    Args:
        text: Any text.

    Returns:
        ``(start, end)`` of each non-blank paragraph, stripped of surrounding whitespace, in order.
    """
    spans: list[Span] = []
    start = 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        _add_stripped(text, start, match.start(), spans)
        start = match.end()
    _add_stripped(text, start, len(text), spans)
    return spans


def sentence_spans(text: str) -> list[Span]:
    """Split a text into sentences: paragraphs first, then sentences inside each paragraph.

    Inside a paragraph a line break counts as a space, so a hard-wrapped sentence stays one sentence; the sentence
    rule is :func:`embedtune.data.builders.sentences.split_sentences`.

    Args:
        text: Any text.

    Returns:
        ``(start, end)`` of each sentence, stripped, in order; ``text[start:end]`` is the sentence.
    """
    spans: list[Span] = []
    for start, end in paragraph_spans(text):
        paragraph = text[start:end].replace("\n", " ")  # same length: offsets still hold
        spans.extend((start + first, start + last) for first, last in split_sentences(paragraph))
    return spans


def chunk_text(text: str, tokenizer: Tokenizer, chunk_tokens: int = 128, overlap_tokens: int = 32) -> list[Chunk]:
    """Cut a text into passages of at most ``chunk_tokens`` tokens overlapping by at most ``overlap_tokens``.

    Args:
        text: The document text (paragraphs separated by blank lines).
        tokenizer: Counts the tokens (see :func:`load_tokenizer`).
        chunk_tokens: Most tokens per passage.
        overlap_tokens: Most tokens a passage repeats from the end of the previous one; the overlap starts at a
            sentence start where one lies in that window, else at a word start.

    Returns:
        The passages in text order. Each holds at least one token; consecutive passages share at most
        ``overlap_tokens`` tokens; together they cover every character of ``text`` but surrounding whitespace.
        Empty for a text without tokens.

    Raises:
        ValueError: unless ``chunk_tokens >= 1`` and ``0 <= overlap_tokens < chunk_tokens``.
    """
    check_chunk_sizes(chunk_tokens, overlap_tokens)
    tokens = tokenizer.token_spans(text)
    if not tokens:
        return []
    cuts = _Cuts(text, tokens)
    count = len(tokens)
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = count if start + chunk_tokens >= count else cuts.best_end(start, chunk_tokens, overlap_tokens)
        chunks.append(cuts.chunk(start, end))
        if end == count:
            return chunks
        start = cuts.next_start(end, overlap_tokens) if overlap_tokens else end


def check_chunk_sizes(chunk_tokens: int, overlap_tokens: int) -> None:
    """Check the passage budget and overlap.

    Args:
        chunk_tokens: Most tokens per passage.
        overlap_tokens: Most tokens shared by consecutive passages.

    Raises:
        ValueError: unless ``chunk_tokens >= 1`` and ``0 <= overlap_tokens < chunk_tokens``.
    """
    if isinstance(chunk_tokens, bool) or chunk_tokens < 1:
        raise ValueError(f"chunk tokens must be at least 1, got {chunk_tokens!r}")
    if isinstance(overlap_tokens, bool) or not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError(
            f"overlap tokens must be from 0 to chunk tokens - 1 ({chunk_tokens - 1}), got {overlap_tokens!r}"
        )


class _Cuts:
    """Token positions a passage may start or end at, by preference: paragraph, sentence, word, character."""

    def __init__(self, text: str, tokens: Sequence[Span]) -> None:
        self.text = text
        self.starts = [start for start, _ in tokens]
        count = len(tokens)
        self.characters = [i for i in range(1, count) if self.starts[i] > self.starts[i - 1]]
        self.words = [i for i in self.characters if self.starts[i] > tokens[i - 1][1]]
        words = set(self.words)
        self.sentences = self._token_positions((start for start, _ in sentence_spans(text)), words)
        self.paragraphs = self._token_positions((start for start, _ in paragraph_spans(text)), words)

    def _token_positions(self, offsets: Any, allowed: set[int]) -> list[int]:
        """Map character offsets to the first token starting there (kept only where a word starts)."""
        positions = {bisect.bisect_left(self.starts, offset) for offset in offsets}
        return sorted(position for position in positions if position in allowed)

    def best_end(self, start: int, chunk_tokens: int, overlap_tokens: int) -> int:
        """Return where the passage starting at token ``start`` ends (exclusive): the preferred cut in budget."""
        limit = start + chunk_tokens
        least = start + overlap_tokens + 1  # so the next passage starts after this one
        preferred_least = max(least, start + chunk_tokens // 2)  # ends at boundaries must not leave tiny passages
        for candidates, lowest in ((self.paragraphs, preferred_least), (self.sentences, preferred_least)):
            found = _last_in(candidates, lowest, limit)
            if found is not None:
                return found
        for candidates in (self.words, self.characters):
            found = _last_in(candidates, least, limit)
            if found is not None:
                return found
        return limit

    def next_start(self, end: int, overlap_tokens: int) -> int:
        """Return where the next passage starts: the earliest preferred start in ``[end - overlap_tokens, end)``.

        Without a sentence or word start in that window it is ``end`` (no overlap).
        """
        lowest = end - overlap_tokens
        for candidates in (self.sentences, self.words):
            found = _first_in(candidates, lowest, end - 1)
            if found is not None:
                return found
        return end

    def chunk(self, start: int, end: int) -> Chunk:
        """Return the passage of tokens ``[start, end)``: from its first token to the next passage's first token."""
        first = 0 if start == 0 else self.starts[start]
        last = len(self.text) if end == len(self.starts) else self.starts[end]
        piece = self.text[first:last]
        first += len(piece) - len(piece.lstrip())
        return Chunk(first, first + len(piece.strip()), end - start)


def _last_in(sorted_values: Sequence[int], lowest: int, highest: int) -> int | None:
    """Return the largest value in ``[lowest, highest]`` of a sorted list, or ``None``."""
    index = bisect.bisect_right(sorted_values, highest) - 1
    return sorted_values[index] if index >= 0 and sorted_values[index] >= lowest else None


def _first_in(sorted_values: Sequence[int], lowest: int, highest: int) -> int | None:
    """Return the smallest value in ``[lowest, highest]`` of a sorted list, or ``None``."""
    index = bisect.bisect_left(sorted_values, lowest)
    return sorted_values[index] if index < len(sorted_values) and sorted_values[index] <= highest else None


def _add_stripped(text: str, start: int, end: int, spans: list[Span]) -> None:
    """Append ``text[start:end]`` stripped of whitespace to ``spans`` unless it is blank."""
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        offset = start + (len(piece) - len(piece.lstrip()))
        spans.append((offset, offset + len(stripped)))
