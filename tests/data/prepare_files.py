"""Tiny BEIR folders and training files for the prepare_data tests, and the honesty checks every run must pass."""

from __future__ import annotations

import json
from pathlib import Path

from embedtune.data.beir import write_beir
from embedtune.data.prepare import EvalSplit, PreparedData
from embedtune.data.splits import normalize_query
from embedtune.data.types import RetrievalSet


def question(i: int) -> str:
    return f"question {i} about topic {i}"


def make_folder(
    folder: Path, splits: dict[str, range | list[int]], texts: dict[int, str] | None = None, score: int = 1
) -> Path:
    """Write a BEIR folder: query q<i> (text question(i)) judged relevant to document d<i> in each listed split."""
    texts = texts or {}
    size = max(i for ids in splits.values() for i in ids) + 1
    return write_beir(
        RetrievalSet(
            corpus={f"d{i}": f"document {i} answers topic {i}" for i in range(size)},
            queries={f"q{i}": texts.get(i, question(i)) for i in range(size)},
            qrels={split: {f"q{i}": {f"d{i}": score} for i in ids} for split, ids in splits.items()},
        ),
        folder,
    )


def write_train_file(path: Path, queries: list[str]) -> Path:
    records = [{"query": query, "pos": [f"pos for {query}"], "neg": [f"neg for {query}"]} for query in queries]
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def texts(split: EvalSplit) -> set[str]:
    return {normalize_query(text) for text in split.queries.values()}


def train_texts(prepared: PreparedData) -> set[str]:
    return {normalize_query(example.query) for example in prepared.train_examples}


def assert_honest(prepared: PreparedData) -> None:
    """No query in two splits, every eval split judged and rankable."""
    splits = [prepared.dev] if prepared.report is prepared.dev else [prepared.dev, prepared.report]
    for split in splits:
        assert set(split.queries) == set(split.qrels)
        assert any(score > 0 for judged in split.qrels.values() for score in judged.values())
        assert all(doc_id in split.corpus for judged in split.qrels.values() for doc_id in judged)
        assert texts(split).isdisjoint(train_texts(prepared))
    if prepared.report is not prepared.dev:
        assert texts(prepared.dev).isdisjoint(texts(prepared.report))
        assert prepared.report_role == "test"
    else:
        assert prepared.report_role == "selection"
